//! Changes to the namespace: mkdir, unlink, rmdir, rename.
//!
//! Directories are prefixes, so `mkdir` writes a directory marker blob (`hdi_isfolder=true`,
//! as blobfuse2 and rclone do) to make an empty directory exist, and `rmdir` removes the marker
//! after checking that nothing lies below. Renaming a file is a server-side copy followed by a
//! delete (blob storage has no rename); renaming a directory renames every blob below it,
//! which is not atomic (see docs/SEMANTICS.md).

use std::ffi::OsStr;

use tracing::{info, warn};

use crate::cache::attr::Remote;
use crate::error::{FsError, FsResult};
use crate::fs::inode::Kind;
use crate::fs::{name, Fs, Stat};
use crate::store::{BlobInfo, StoreError};

/// Directory renames touch every blob below; beyond this many we refuse (EXDEV makes `mv`
/// fall back to copying) rather than run for hours without telling the caller anything.
pub const MAX_DIR_RENAME_BLOBS: usize = 10_000;

impl Fs {
    pub async fn mkdir(&self, parent: u64, name: &OsStr) -> FsResult<Stat> {
        self.check_writable()?;
        let segment = name::segment_from_os(name)?;
        let parent_info = self.dir_inode(parent)?;
        let key = name::join(&parent_info.key, segment);
        name::check_blob_name(&key)?;
        if self.resolve_fresh(&key).await? != Remote::Absent
            || self
                .inodes
                .child(parent, segment)
                .is_some_and(|c| c.file.is_some())
        {
            return Err(FsError::expected(libc::EEXIST, format!("'{key}' exists")));
        }
        self.store
            .put_dir_marker(&key)
            .await
            .map_err(|e| FsError::from_store("creating directory", &key, e))?;
        self.changed_locally(&key, Some(Remote::Dir));
        let ino = self.inodes.lookup_child(parent, segment, Kind::Dir);
        self.getattr(ino).await
    }

    pub async fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let segment = name::segment_from_os(name)?;
        let parent_info = self.dir_inode(parent)?;
        let key = name::join(&parent_info.key, segment);
        let local_only = self
            .inodes
            .local_only_children(parent)
            .iter()
            .any(|n| n == segment);
        match self.resolve_fresh(&key).await? {
            Remote::Dir => {
                return Err(FsError::expected(
                    libc::EISDIR,
                    format!("'{key}' is a directory"),
                ))
            }
            Remote::Absent if !local_only => return Err(FsError::not_found(&key)),
            Remote::Absent => {}
            Remote::File(_) => match self.store.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(FsError::from_store("deleting", &key, e)),
            },
        }
        self.inodes.detach_child(parent, segment);
        self.content.forget(&key);
        self.changed_locally(&key, Some(Remote::Absent));
        Ok(())
    }

    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let segment = name::segment_from_os(name)?;
        let parent_info = self.dir_inode(parent)?;
        let key = name::join(&parent_info.key, segment);
        let known = self.inodes.child(parent, segment);
        match self.resolve_fresh(&key).await? {
            Remote::File(_) => {
                return Err(FsError::expected(
                    libc::ENOTDIR,
                    format!("'{key}' is not a directory"),
                ))
            }
            // A directory that existed only through its last entry vanishes with it; removing
            // it is then already done.
            Remote::Absent if known.as_ref().is_some_and(|c| c.kind == Kind::Dir) => {}
            Remote::Absent => return Err(FsError::not_found(&key)),
            Remote::Dir => {
                if let Some(child) = &known {
                    if !self.inodes.local_only_children(child.ino).is_empty() {
                        return Err(FsError::expected(
                            libc::ENOTEMPTY,
                            format!("'{key}' is not empty"),
                        ));
                    }
                }
                if self.has_children(&key).await? {
                    return Err(FsError::expected(
                        libc::ENOTEMPTY,
                        format!("'{key}' is not empty"),
                    ));
                }
                match self.store.delete(&key).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        return Err(FsError::from_store("deleting directory marker", &key, e))
                    }
                }
            }
        }
        self.inodes.detach_child(parent, segment);
        self.changed_locally(&key, Some(Remote::Absent));
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::expected(
                libc::EINVAL,
                "exchanging two names is not supported",
            ));
        }
        let segment = name::segment_from_os(name)?;
        let new_segment = name::segment_from_os(new_name)?;
        let from = name::join(&self.dir_inode(parent)?.key, segment);
        let to = name::join(&self.dir_inode(new_parent)?.key, new_segment);
        if from == to {
            return Ok(());
        }
        name::check_blob_name(&to)?;
        let local_only = self
            .inodes
            .local_only_children(parent)
            .iter()
            .any(|n| n == segment);
        let source = self.resolve_fresh(&from).await?;
        let target = self.resolve_fresh(&to).await?;
        if flags & libc::RENAME_NOREPLACE != 0 && target != Remote::Absent {
            return Err(FsError::expected(libc::EEXIST, format!("'{to}' exists")));
        }
        match (&source, &target) {
            (Remote::Absent, _) if !local_only => return Err(FsError::not_found(&from)),
            (Remote::Dir, Remote::File(_)) => {
                return Err(FsError::expected(
                    libc::ENOTDIR,
                    format!("'{to}' is not a directory"),
                ))
            }
            (Remote::File(_) | Remote::Absent, Remote::Dir) => {
                return Err(FsError::expected(
                    libc::EISDIR,
                    format!("'{to}' is a directory"),
                ))
            }
            _ => {}
        }
        match source {
            Remote::Dir => self.rename_dir(&from, &to, &target).await?,
            Remote::File(blob) => self.rename_file(&from, &to, blob).await?,
            Remote::Absent => {} // created here and not uploaded yet: only the name moves
        }
        self.inodes.rename(parent, segment, new_parent, new_segment);
        self.changed_locally(&from, Some(Remote::Absent));
        if matches!(self.attrs.get(&to), Some(Remote::Absent)) {
            self.changed_locally(&to, None);
        }
        info!(from = %from, to = %to, "renamed");
        Ok(())
    }

    async fn rename_file(&self, from: &str, to: &str, blob: BlobInfo) -> FsResult<()> {
        let copied = self
            .store
            .copy(from, to)
            .await
            .map_err(|e| FsError::from_store(&format!("copying '{from}' to"), to, e))?;
        self.delete_after_copy(from).await?;
        self.rebase_open_file(from, to, &copied.etag);
        self.changed_locally(
            to,
            Some(Remote::File(BlobInfo {
                name: to.to_string(),
                size: blob.size,
                last_modified: copied.last_modified,
                etag: copied.etag,
                is_dir_marker: false,
            })),
        );
        Ok(())
    }

    async fn delete_after_copy(&self, from: &str) -> FsResult<()> {
        match self.store.delete(from).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(FsError::from_store("deleting the renamed", from, e)),
        }
    }

    /// Renames every blob below `from/` (and its marker). The target must be absent or an
    /// empty directory.
    async fn rename_dir(&self, from: &str, to: &str, target: &Remote) -> FsResult<()> {
        if *target == Remote::Dir && self.has_children(to).await? {
            return Err(FsError::expected(
                libc::ENOTEMPTY,
                format!("'{to}' is not empty"),
            ));
        }
        if self.inodes.open_files().iter().any(|f| {
            f.key.starts_with(&name::dir_prefix(from))
                && f.file.as_ref().is_some_and(|s| s.is_dirty())
        }) {
            return Err(FsError::expected(
                libc::EBUSY,
                format!("'{from}' holds files with changes not uploaded yet; close them first"),
            ));
        }
        let from_prefix = name::dir_prefix(from);
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .store
                .list(&from_prefix, None, marker, 5000)
                .await
                .map_err(|e| FsError::from_store("listing", from, e))?;
            names.extend(page.blobs.into_iter().map(|b| b.name));
            if names.len() > MAX_DIR_RENAME_BLOBS {
                return Err(FsError::expected(
                    libc::EXDEV,
                    format!("'{from}' has more than {MAX_DIR_RENAME_BLOBS} blobs: too many to rename one by one"),
                ));
            }
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
        for old in &names {
            let new = format!("{}{}", name::dir_prefix(to), &old[from_prefix.len()..]);
            let copied = self
                .store
                .copy(old, &new)
                .await
                .map_err(|e| FsError::from_store(&format!("copying '{old}' to"), &new, e))?;
            self.delete_after_copy(old).await?;
            self.rebase_open_file(old, &new, &copied.etag);
            self.changed_locally(old, None);
            self.changed_locally(&new, None);
        }
        // The marker goes last: if anything above failed, the source still looks whole.
        match self.store.properties(from).await {
            Ok(marker) if marker.is_dir_marker => {
                self.store
                    .put_dir_marker(to)
                    .await
                    .map_err(|e| FsError::from_store("creating directory", to, e))?;
                self.delete_after_copy(from).await?;
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                if names.is_empty() {
                    warn!(from, "renaming a directory that has no blobs");
                }
            }
            Err(e) => return Err(FsError::from_store("reading properties of", from, e)),
        }
        self.changed_locally(to, Some(Remote::Dir));
        Ok(())
    }

    /// After `from` was copied to `to` (now at `etag`) and deleted: cached content and an open
    /// file's state continue from the new name and version, so reads of parts not cached yet
    /// and the next upload's condition refer to the blob that exists.
    fn rebase_open_file(&self, from: &str, to: &str, etag: &str) {
        self.content.rename(from, to, etag);
        let open = self.inodes.open_files().into_iter().find(|f| f.key == from);
        if let Some(file) = open.and_then(|f| f.file) {
            let mut state = file.state();
            if state.base_etag.is_some() {
                state.base_etag = Some(etag.to_string());
            }
        }
    }
}
