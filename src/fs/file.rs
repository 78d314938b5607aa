//! Open files: their local content, size and dirty state, and the operations on them
//! (create, open, read, write, truncate, flush, release).
//!
//! One [`OpenFile`] per inode, shared by all its handles, so readers of one file share one
//! download. Writes go to the cached copy and mark the file dirty; `flush` (every `close`)
//! and `fsync` upload it with a condition on the ETag the content started from, so a blob
//! changed remotely is never overwritten. A failed upload keeps the local copy and the dirty
//! mark: the next flush retries, and unmount saves it to `lost+found` if it still fails.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tracing::{error, info, warn};

use crate::cache::attr::Remote;
use crate::cache::content::{CachedBlob, RemoteVersion, CHUNK_SIZE};
use crate::cache::upload;
use crate::error::{FsError, FsResult};
use crate::fs::handle::{FileHandle, ReadPattern};
use crate::fs::inode::{InodeInfo, Kind};
use crate::fs::{name, Fs, Stat};
use crate::store::{BlobInfo, StoreError, WriteCondition};

/// Mutable state of an open (or dirty) file.
pub struct FileState {
    pub blob: Arc<CachedBlob>,
    pub size: u64,
    pub mtime: SystemTime,
    /// Local changes not uploaded yet.
    pub dirty: bool,
    /// ETag of the remote blob the local content started from; `None` if the blob did not
    /// exist (a new file), so the upload must not replace one created meanwhile.
    pub base_etag: Option<String>,
    /// The last upload found the blob changed (or created) remotely: retrying cannot help.
    pub conflict: bool,
}

pub struct OpenFile {
    state: Mutex<FileState>,
    /// Serialises writers, truncation and uploads of this file, across awaits.
    pub(crate) io: tokio::sync::Mutex<()>,
    /// Handles whose writes go straight to the cache file (see [`crate::fs::external`]).
    pub(crate) external_writers: std::sync::atomic::AtomicUsize,
}

impl OpenFile {
    fn new(state: FileState) -> Arc<Self> {
        Arc::new(OpenFile {
            state: Mutex::new(state),
            io: tokio::sync::Mutex::new(()),
            external_writers: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, FileState> {
        // Updates under this lock are single assignments: never half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_dirty(&self) -> bool {
        self.state().dirty
    }

    fn snapshot(&self) -> (Arc<CachedBlob>, u64) {
        let state = self.state();
        (Arc::clone(&state.blob), state.size)
    }
}

/// The result of `open`.
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep the pages it cached from an earlier open: same ETag, no local
    /// changes since.
    pub keep_cache: bool,
    /// For a read-only open of a fully cached, clean file: the cache file, which the adaptor
    /// may hand to the kernel (FUSE passthrough) so reads bypass the daemon.
    pub local_copy: Option<std::fs::File>,
}

/// Flags of `open(2)` the core cares about.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
    pub exclusive: bool,
}

impl OpenMode {
    pub fn from_flags(flags: i32) -> Self {
        let access = flags & libc::O_ACCMODE;
        OpenMode {
            write: access == libc::O_WRONLY || access == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

/// Sequential readers get read-ahead that doubles up to this; random readers get none.
const MAX_READAHEAD: u64 = 64 << 20;
/// The first window (and the head fetched at open). 8 MiB rather than less: Azurite answers a
/// range of up to 4 MiB only once it has all of it (the first byte of a 4 MiB range came after
/// 13-18 ms here, of an 8 MiB one after 5-6 ms), and the service streams either alike.
const INITIAL_READAHEAD: u64 = 8 << 20;

impl Fs {
    fn file_inode(&self, ino: u64) -> FsResult<InodeInfo> {
        let info = self.inode(ino)?;
        if info.kind == Kind::Dir {
            return Err(FsError::expected(
                libc::EISDIR,
                format!("'{}' is a directory", info.key),
            ));
        }
        Ok(info)
    }

    /// The open-file state of a file inode, created from its remote version if not open yet.
    async fn open_state(&self, info: &InodeInfo) -> FsResult<Arc<OpenFile>> {
        if let Some(file) = &info.file {
            return Ok(Arc::clone(file));
        }
        let remote = match self.resolve(&info.key).await? {
            Remote::File(blob) => blob,
            Remote::Dir => {
                return Err(FsError::expected(
                    libc::EISDIR,
                    format!("'{}' is a directory", info.key),
                ))
            }
            Remote::Absent => return Err(FsError::not_found(&info.key)),
        };
        let blob = self
            .content
            .open_remote(RemoteVersion {
                name: info.key.clone(),
                etag: remote.etag.clone(),
                size: remote.size,
            })
            .map_err(|e| FsError::from_io("caching", &info.key, e))?;
        let file = OpenFile::new(FileState {
            blob,
            size: remote.size,
            mtime: remote.last_modified,
            dirty: false,
            base_etag: Some(remote.etag),
            conflict: false,
        });
        // Another open may have raced us: the table keeps the first state.
        Ok(self.inodes.attach_file(info.ino, file))
    }

    /// Opens a file. See [`Opened`] for what the kernel is told.
    pub async fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        let mode = OpenMode::from_flags(flags);
        if mode.write {
            self.check_writable()?;
        }
        let info = self.file_inode(ino)?;
        let file = self.open_state(&info).await?;
        self.inodes.add_handle(ino);
        if mode.write && mode.truncate {
            if let Err(err) = self.truncate_file(&info, &file, 0).await {
                self.release_state(&info, &file);
                return Err(err);
            }
        } else {
            // Start fetching the head of the file: most readers begin there.
            let (blob, size) = file.snapshot();
            let content = Arc::clone(&self.content);
            let head = size.min(INITIAL_READAHEAD.min(self.max_readahead()));
            tokio::spawn(async move {
                let _ = blob.ensure(&content, 0..0, head).await;
            });
        }
        let clean_version = {
            let state = file.state();
            (!state.dirty).then(|| state.base_etag.clone()).flatten()
        };
        let keep_cache = self.inodes.swap_cached_version(ino, clean_version.clone());
        let local_copy = if !mode.write && clean_version.is_some() {
            // Only a complete copy can serve reads without us (and from now on it is never
            // trimmed); a failed dup just means the reads come through the daemon.
            let blob = Arc::clone(&file.state().blob);
            blob.hand_out()
        } else {
            None
        };
        Ok(Opened {
            fh: self.handles.insert(FileHandle::new(ino, file, mode.write)),
            keep_cache,
            local_copy,
        })
    }

    pub async fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        flags: i32,
    ) -> FsResult<(Stat, u64)> {
        self.check_writable()?;
        let segment = name::segment_from_os(name)?;
        let parent_info = self.dir_inode(parent)?;
        let key = name::join(&parent_info.key, segment);
        name::check_blob_name(&key)?;
        match self.resolve_fresh(&key).await? {
            Remote::Absent => {}
            Remote::Dir => return Err(FsError::expected(libc::EEXIST, format!("'{key}' exists"))),
            Remote::File(_) if OpenMode::from_flags(flags).exclusive => {
                return Err(FsError::expected(libc::EEXIST, format!("'{key}' exists")))
            }
            Remote::File(_) => {
                // The kernel thought the name was free (a negative entry younger than its
                // TTL), but somebody created it meanwhile: open it, as O_CREAT without O_EXCL
                // does, rather than replace it.
                let ino = self.inodes.lookup_child(parent, segment, Kind::File);
                let opened = self.open(ino, flags).await?;
                let stat = self.getattr(ino).await?;
                return Ok((stat, opened.fh));
            }
        }
        let base_etag = None;
        let blob = self
            .content
            .create_local(&key)
            .map_err(|e| FsError::from_io("creating", &key, e))?;
        blob.mark_dirty(&key)
            .map_err(|e| FsError::from_io("creating", &key, e))?;
        let is_new = base_etag.is_none();
        let file = OpenFile::new(FileState {
            blob,
            size: 0,
            mtime: SystemTime::now(),
            dirty: true,
            base_etag,
            conflict: false,
        });
        let ino = self.inodes.lookup_child(parent, segment, Kind::File);
        let file = self.inodes.replace_file(ino, file);
        self.inodes.add_handle(ino);
        if is_new {
            self.inodes.set_local_only(ino, true);
        }
        self.changed_locally(&key, None);
        let stat = self.file_stat(ino, &file);
        let fh = self.handles.insert(FileHandle::new(ino, file, true));
        Ok((stat, fh))
    }

    /// A small cache must still hold the read-ahead window: it gets a quarter at most.
    fn max_readahead(&self) -> u64 {
        MAX_READAHEAD.min(self.content.budget() / 4).max(CHUNK_SIZE)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let handle = self.handles.get(fh)?;
        let (blob, file_size) = handle.file.snapshot();
        if offset >= file_size || size == 0 {
            return Ok(Vec::new());
        }
        let end = (offset + u64::from(size)).min(file_size);
        let max_readahead = self.max_readahead();
        let window = handle.read_pattern(|p: &mut ReadPattern| {
            p.next(
                offset,
                end,
                INITIAL_READAHEAD.min(max_readahead),
                max_readahead,
            )
        });
        let prefetch_end = (end + window).min(file_size);
        let _pin = blob.pin(offset..end);
        if let Err(err) = blob.ensure(&self.content, offset..end, prefetch_end).await {
            if err.errno == libc::ESTALE {
                // The blob changed: the next open must see the new version, not this one.
                if let Ok(info) = self.inode(handle.ino) {
                    self.attrs.invalidate(&info.key);
                }
            }
            return Err(err);
        }
        let key = self.inode(handle.ino).map(|i| i.key).unwrap_or_default();
        let len = (end - offset) as usize;
        tokio::task::spawn_blocking(move || blob.read_at(offset, len))
            .await
            .map_err(|e| FsError::failure(libc::EIO, format!("reading '{key}': {e}")))?
            .map_err(|e| FsError::from_io("reading", &key, e))
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Vec<u8>) -> FsResult<u32> {
        self.check_writable()?;
        let handle = self.handles.get(fh)?;
        if !handle.writable {
            return Err(FsError::expected(libc::EBADF, "file not open for writing"));
        }
        let info = self.inode(handle.ino)?;
        let file = &handle.file;
        let _io = file.io.lock().await;
        self.make_local(&info.key, file).await?;
        let blob = Arc::clone(&file.state().blob);
        let len = data.len();
        let key = info.key.clone();
        let content = Arc::clone(&self.content);
        tokio::task::spawn_blocking(move || {
            content.write_with_room(len as u64, &key, || blob.write_at(&data, offset))
        })
        .await
        .map_err(|e| FsError::failure(libc::EIO, format!("writing '{}': {e}", info.key)))?
        .map_err(|e| FsError::from_io("writing", &info.key, e))?;
        let mut state = file.state();
        state.size = state.size.max(offset + len as u64);
        state.mtime = SystemTime::now();
        state.dirty = true;
        Ok(len as u32)
    }

    /// Before the first local change: fetch whatever is still remote, and record on disk that
    /// the file is dirty.
    async fn make_local(&self, key: &str, file: &OpenFile) -> FsResult<()> {
        let (blob, size, dirty) = {
            let state = file.state();
            (Arc::clone(&state.blob), state.size, state.dirty)
        };
        if blob.source().is_some() {
            // Pinned until detached: from then on the content is local and never trimmed.
            let _pin = blob.pin(0..size);
            blob.ensure(&self.content, 0..size, size).await?;
            blob.detach_from_remote();
        }
        if !dirty {
            blob.mark_dirty(key)
                .map_err(|e| FsError::from_io("writing", key, e))?;
        }
        Ok(())
    }

    /// Sets a file's size: `ftruncate`, `open(O_TRUNC)`, `truncate(2)`.
    async fn truncate_file(&self, info: &InodeInfo, file: &OpenFile, size: u64) -> FsResult<()> {
        let _io = file.io.lock().await;
        if size == 0 {
            // Nothing of the old content survives: no need to download it. The file is cut
            // in place, so a kernel holding it as a passthrough backing file sees the change.
            let mut state = file.state();
            state.blob.detach_from_remote();
            state.size = 0;
        }
        self.make_local(&info.key, file).await?;
        let blob = Arc::clone(&file.state().blob);
        blob.set_len(size)
            .map_err(|e| FsError::from_io("truncating", &info.key, e))?;
        let mut state = file.state();
        state.size = size;
        state.mtime = SystemTime::now();
        state.dirty = true;
        Ok(())
    }

    /// `setattr`: size changes truncate; mode, owner and times are accepted and not stored
    /// (blobs have no such properties; see docs/SEMANTICS.md).
    pub async fn setattr_size(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<Stat> {
        self.check_writable()?;
        let info = self.file_inode(ino)?;
        let open_file = match fh.and_then(|fh| self.handles.get(fh).ok()) {
            Some(handle) => Some(Arc::clone(&handle.file)),
            None => info.file.clone(),
        };
        match open_file {
            Some(file) => {
                self.truncate_file(&info, &file, size).await?;
                Ok(self.file_stat(ino, &file))
            }
            None => {
                // truncate(2) on a file nobody has open: no close will follow, upload now.
                let file = self.open_state(&info).await?;
                self.inodes.add_handle(ino);
                let result = async {
                    self.truncate_file(&info, &file, size).await?;
                    self.upload_if_dirty(&info, &file).await
                }
                .await;
                let stat = self.file_stat(ino, &file);
                self.release_state(&info, &file);
                result.map(|()| stat)
            }
        }
    }

    /// `flush` (each `close`) and `fsync`: upload if dirty.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh)?;
        // A reader's close does not report (or retry) a writer's failed upload.
        if !handle.writable {
            return Ok(());
        }
        self.sync_external_writes(&handle)?;
        if !handle.file.is_dirty() {
            return Ok(());
        }
        let info = self.inode(handle.ino)?;
        self.upload_if_dirty(&info, &handle.file).await
    }

    pub(crate) async fn upload_if_dirty(&self, info: &InodeInfo, file: &OpenFile) -> FsResult<()> {
        let _io = file.io.lock().await;
        let (blob, size, base_etag) = {
            let state = file.state();
            if !state.dirty {
                return Ok(());
            }
            (Arc::clone(&state.blob), state.size, state.base_etag.clone())
        };
        // Re-read the name: a rename may have moved the file since the handle was opened.
        let info = self.inode(info.ino).unwrap_or_else(|_| info.clone());
        if info.detached {
            // Unlinked (or replaced) while open: like a deleted local file, its data goes
            // with the last close; there is no name to upload to.
            file.state().dirty = false;
            if let Err(err) = blob.mark_clean() {
                warn!(blob = %info.key, "could not clear the dirty mark in the cache: {err}");
            }
            return Ok(());
        }
        let condition = match &base_etag {
            Some(etag) => WriteCondition::Matches(etag.clone()),
            None => WriteCondition::DoesNotExist,
        };
        let result = upload::upload(&self.store, &info.key, &blob, size, &condition).await;
        let written = match result {
            Ok(written) => written,
            Err(err) => {
                if matches!(
                    err,
                    StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. }
                ) {
                    file.state().conflict = true;
                }
                return Err(upload_error(&info.key, &blob, err));
            }
        };
        info!(blob = %info.key, bytes = size, "uploaded");
        {
            let mut state = file.state();
            state.dirty = false;
            state.base_etag = Some(written.etag.clone());
            state.mtime = written.last_modified;
        }
        if let Err(err) = blob.mark_clean() {
            warn!(blob = %info.key, "could not clear the dirty mark in the cache: {err}");
        }
        blob.attach_to_remote(RemoteVersion {
            name: info.key.clone(),
            etag: written.etag.clone(),
            size,
        });
        self.inodes.set_local_only(info.ino, false);
        // The kernel's pages were written through us: they are this new version.
        self.inodes
            .swap_cached_version(info.ino, Some(written.etag.clone()));
        self.changed_locally(
            &info.key,
            Some(Remote::File(BlobInfo {
                name: info.key.clone(),
                size,
                last_modified: written.last_modified,
                etag: written.etag,
                is_dir_marker: false,
            })),
        );
        Ok(())
    }

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh).await
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.remove(fh)?;
        self.detach_external_writer(&handle);
        let info = self.inode(handle.ino)?;
        self.release_state(&info, &handle.file);
        Ok(())
    }

    /// One handle fewer; when none is left and nothing is dirty, the state goes and the
    /// content becomes an idle cache entry.
    fn release_state(&self, info: &InodeInfo, file: &Arc<OpenFile>) {
        let dirty = file.is_dirty();
        if !self.inodes.remove_handle(info.ino, dirty) {
            return;
        }
        let (blob, conflict) = {
            let state = file.state();
            (Arc::clone(&state.blob), state.conflict)
        };
        if dirty && conflict {
            // The remote blob changed: keep its version, and save ours where the user can
            // find it, instead of holding it in the mount where it would shadow the remote.
            match self.content.keep_unsaved(&info.key, &blob) {
                Ok(path) => {
                    error!(blob = %info.key, kept_at = %path.display(), "the blob changed remotely while open for writing; the local version was saved to lost+found");
                    self.inodes.set_local_only(info.ino, false);
                    self.inodes.clear_file(info.ino);
                    self.content.forget(&info.key);
                    // What exists now is somebody else's version: ask for it afresh.
                    self.attrs.invalidate(&info.key);
                }
                Err(err) => {
                    error!(blob = %info.key, "the blob changed remotely while open for writing, and saving the local version to lost+found failed: {err}; it stays in the mount until unmount")
                }
            }
        } else if dirty {
            warn!(
                blob = %info.key,
                "closed with changes that could not be uploaded; they are kept and retried at the next flush, fsync or unmount"
            );
        } else if !info.detached {
            self.content.release(&info.key, &blob);
        }
    }

    pub(crate) fn file_stat(&self, ino: u64, file: &OpenFile) -> Stat {
        let external = self.external_size(file);
        let state = file.state();
        let size = external.unwrap_or(state.size);
        self.make_stat(ino, Kind::File, size, state.mtime)
    }
}

/// Turns a failed upload into the errno `close()` reports (EIO, or EACCES for a refused
/// credential) and a message that names the blob, the reason and where the data is.
fn upload_error(key: &str, blob: &CachedBlob, err: StoreError) -> FsError {
    let errno = match &err {
        StoreError::AuthFailed { .. } => libc::EACCES,
        _ => libc::EIO,
    };
    let outcome = match &err {
        StoreError::PreconditionFailed { .. } | StoreError::AlreadyExists { .. } => {
            "it was changed or created remotely since it was opened, and is not overwritten; \
             the local version goes to the cache's lost+found when the file is closed"
                .to_string()
        }
        other => format!(
            "{other}; the local copy is kept at {} and the upload retried at the next flush, \
             fsync or unmount",
            blob.path().display()
        ),
    };
    FsError::failure(errno, format!("uploading '{key}' failed: {outcome}"))
}
