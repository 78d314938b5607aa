//! The filesystem core: POSIX-shaped async operations over a blob container.
//!
//! [`Fs`] owns the inode table, the file and directory handles and the caches, and talks to
//! the container only through [`BlobStore`]. Its methods take and return plain values (inode
//! numbers, [`Stat`]s, bytes) and [`FsError`]s carrying an errno, so the FUSE adaptor only
//! translates, and tests drive the core without a kernel.
//!
//! Consistency rules (see docs/SEMANTICS.md): what the remote side looks like is cached per
//! blob name for `attr_ttl` (absent names for `negative_ttl`); changes made through the mount
//! update the caches at once; changes made elsewhere show after the TTL.
//!
//! - [`file`]: open, read, write, truncate, flush, release, create;
//! - [`dir`]: directory listings, and [`dir_prefetch`]: listing ahead of tree walks;
//! - [`namespace`]: mkdir, unlink, rmdir, rename;
//! - [`external`]: writers whose writes reach the cache file without us (passthrough);
//! - [`inode`], [`handle`], [`name`]: the tables and name rules they share.

pub mod dir;
pub mod dir_prefetch;
pub mod external;
pub mod file;
pub mod handle;
pub mod inode;
pub mod name;
pub mod namespace;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info};

use crate::cache::attr::{AttrCache, Remote};
use crate::cache::content::ContentCache;
use crate::error::{FsError, FsResult};
use crate::store::BlobStore;
use dir::{DirHandle, LIST_PAGE_SIZE};
use dir_prefetch::DirPrefetch;
use handle::{FileHandle, HandleTable};
use inode::{InodeInfo, InodeTable, Kind, ROOT_INO};

/// How every file and directory is presented (blobs carry no owner or mode).
#[derive(Clone, Debug)]
pub struct Presentation {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub read_only: bool,
}

/// Attributes of one inode, as the kernel needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

pub struct Fs {
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) inodes: InodeTable,
    pub(crate) attrs: AttrCache,
    pub(crate) content: Arc<ContentCache>,
    pub(crate) handles: HandleTable<FileHandle>,
    pub(crate) dirs: HandleTable<DirHandle>,
    pub(crate) dir_prefetch: DirPrefetch,
    presentation: Presentation,
    /// Directories without a marker blob have no time of their own: they show the mount's.
    mounted_at: SystemTime,
}

impl Fs {
    /// `prefix` is the blob name of the mount's root ("" = the whole container).
    pub fn new(
        store: Arc<dyn BlobStore>,
        prefix: &str,
        content: Arc<ContentCache>,
        attrs: AttrCache,
        presentation: Presentation,
    ) -> Self {
        let dir_prefetch = DirPrefetch::new(Arc::clone(&store), LIST_PAGE_SIZE, attrs.attr_ttl());
        Fs {
            store,
            inodes: InodeTable::new(prefix),
            attrs,
            content,
            handles: HandleTable::new(),
            dirs: HandleTable::new(),
            dir_prefetch,
            presentation,
            mounted_at: SystemTime::now(),
        }
    }

    /// How long the kernel may cache an entry or its attributes.
    pub fn attr_ttl(&self) -> Duration {
        self.attrs.attr_ttl()
    }

    /// How long the kernel may cache a "no such name" answer.
    pub fn negative_ttl(&self) -> Duration {
        self.attrs.negative_ttl()
    }

    pub fn is_read_only(&self) -> bool {
        self.presentation.read_only
    }

    /// Records what a change made through the mount did to `key` (`None`: not known, ask
    /// again). Listings fetched ahead may predate the change, so they go too.
    pub(crate) fn changed_locally(&self, key: &str, now: Option<Remote>) {
        match now {
            Some(remote) => self.attrs.insert(key, remote),
            None => self.attrs.invalidate(key),
        }
        self.dir_prefetch.forget_all();
    }

    pub(crate) fn check_writable(&self) -> FsResult<()> {
        if self.presentation.read_only {
            return Err(FsError::expected(libc::EROFS, "the mount is read-only"));
        }
        Ok(())
    }

    pub(crate) fn inode(&self, ino: u64) -> FsResult<InodeInfo> {
        self.inodes
            .get(ino)
            .ok_or_else(|| FsError::expected(libc::ESTALE, format!("unknown inode {ino}")))
    }

    pub(crate) fn dir_inode(&self, ino: u64) -> FsResult<InodeInfo> {
        let info = self.inode(ino)?;
        if info.kind != Kind::Dir {
            return Err(FsError::expected(
                libc::ENOTDIR,
                format!("'{}' is not a directory", info.key),
            ));
        }
        Ok(info)
    }

    pub(crate) fn make_stat(&self, ino: u64, kind: Kind, size: u64, mtime: SystemTime) -> Stat {
        let p = &self.presentation;
        Stat {
            ino,
            kind,
            size,
            mtime,
            perm: if kind == Kind::Dir {
                p.dir_mode
            } else {
                p.file_mode
            },
            uid: p.uid,
            gid: p.gid,
        }
    }

    pub(crate) fn dir_stat(&self, ino: u64) -> Stat {
        self.make_stat(ino, Kind::Dir, 0, self.mounted_at)
    }

    fn remote_stat(&self, ino: u64, remote: &Remote) -> Option<Stat> {
        match remote {
            Remote::File(blob) => {
                Some(self.make_stat(ino, Kind::File, blob.size, blob.last_modified))
            }
            Remote::Dir => Some(self.dir_stat(ino)),
            Remote::Absent => None,
        }
    }

    /// What `key` is on the remote side: from the attribute cache, else asked of the store.
    pub(crate) async fn resolve(&self, key: &str) -> FsResult<Remote> {
        if key.is_empty() {
            return Ok(Remote::Dir);
        }
        match self.attrs.get(key) {
            Some(remote) => Ok(remote),
            None => self.resolve_fresh(key).await,
        }
    }

    /// What `key` is on the remote side now: a properties request and a one-entry listing of
    /// `key/`, concurrently (a name can be a file, a directory, or both; the directory wins,
    /// see docs/SEMANTICS.md).
    pub(crate) async fn resolve_fresh(&self, key: &str) -> FsResult<Remote> {
        let (properties, has_children) =
            tokio::join!(self.store.properties(key), self.has_children(key));
        let remote = if has_children? {
            Remote::Dir
        } else {
            match properties {
                Ok(blob) if blob.is_dir_marker => Remote::Dir,
                Ok(blob) => Remote::File(blob),
                Err(e) if e.is_not_found() => Remote::Absent,
                Err(e) => return Err(FsError::from_store("reading properties of", key, e)),
            }
        };
        self.attrs.insert(key, remote.clone());
        Ok(remote)
    }

    /// Whether any blob's name starts with `key/`: a one-entry listing without a delimiter.
    /// (With a delimiter, Azurite takes seconds to answer a one-entry listing of a prefix with
    /// thousands of blobs below it, 1.5-2 s for 10,000 here, against 30 ms without; the
    /// answer is the same.)
    pub(crate) async fn has_children(&self, key: &str) -> FsResult<bool> {
        let prefix = name::dir_prefix(key);
        let below = self
            .store
            .list(&prefix, None, None, 1)
            .await
            .map_err(|e| FsError::from_store("listing", &prefix, e))?;
        Ok(!below.blobs.is_empty() || !below.prefixes.is_empty())
    }

    pub async fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Stat> {
        let segment = name::segment_from_os(name).map_err(|mut e| {
            // Names that cannot be blob names simply do not exist.
            e.errno = libc::ENOENT;
            e
        })?;
        let parent_info = self.dir_inode(parent)?;
        if let Some(child) = self.inodes.child(parent, segment) {
            if let Some(file) = &child.file {
                let ino = self.inodes.lookup_child(parent, segment, Kind::File);
                return Ok(self.file_stat(ino, file));
            }
        }
        let key = name::join(&parent_info.key, segment);
        let remote = self.resolve(&key).await?;
        let kind = match remote {
            Remote::File(_) => Kind::File,
            Remote::Dir => Kind::Dir,
            Remote::Absent => return Err(FsError::not_found(&key)),
        };
        let ino = self.inodes.lookup_child(parent, segment, kind);
        self.remote_stat(ino, &remote)
            .ok_or_else(|| FsError::not_found(&key))
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Stat> {
        if ino == ROOT_INO {
            return Ok(self.dir_stat(ino));
        }
        let info = self.inode(ino)?;
        if let Some(file) = &info.file {
            return Ok(self.file_stat(ino, file));
        }
        let remote = self.resolve(&info.key).await?;
        let kind_matches = matches!(
            (&remote, info.kind),
            (Remote::File(_), Kind::File) | (Remote::Dir, Kind::Dir)
        );
        if !kind_matches {
            return Err(FsError::not_found(&info.key));
        }
        self.remote_stat(ino, &remote)
            .ok_or_else(|| FsError::not_found(&info.key))
    }

    /// Bytes of cached content on the local disk.
    pub fn cache_disk_usage(&self) -> u64 {
        self.content.disk_usage()
    }

    pub fn forget(&self, ino: u64, count: u64) {
        self.inodes.forget(ino, count);
    }

    /// Uploads every file still dirty (the last chance before the process exits) and keeps
    /// the clean cached content for the next mount. Files that still fail to upload are kept
    /// in the cache's lost+found, and the count of those is returned.
    pub async fn shutdown(&self) -> usize {
        let mut unsaved = 0;
        for info in self.inodes.open_files() {
            let Some(file) = &info.file else { continue };
            if !file.is_dirty() || info.detached {
                continue;
            }
            match self.upload_if_dirty(&info, file).await {
                Ok(()) => self.inodes.clear_file(info.ino),
                Err(err) => {
                    unsaved += 1;
                    let blob = Arc::clone(&file.state().blob);
                    match self.content.keep_unsaved(&info.key, &blob) {
                        Ok(path) => error!(blob = %info.key, kept_at = %path.display(), "{err}"),
                        Err(io) => {
                            error!(blob = %info.key, "{err}; saving it to lost+found failed too: {io}")
                        }
                    }
                }
            }
        }
        if unsaved == 0 {
            info!("all changes uploaded");
        }
        self.content.persist();
        unsaved
    }
}
