//! Writers whose writes bypass the daemon.
//!
//! While a fully cached file is open for passthrough reads, the kernel insists that every
//! other open of it be passthrough too (see `fuse::io_mode`), writers included: their writes
//! then go from the kernel straight into the cache file. The core cannot see those writes, so
//! it notices them instead: when such a writer is attached, the file is marked dirty on disk
//! (a crash keeps it, as for any write); at each flush or fsync of that handle, a changed
//! length or mtime of the cache file makes the state dirty with the new size, and the usual
//! conditional upload follows. While such writers are open, `stat` reports the cache file's
//! length, which the kernel's writes keep current.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{FsError, FsResult};
use crate::fs::file::OpenFile;
use crate::fs::handle::FileHandle;
use crate::fs::Fs;

impl Fs {
    /// The adaptor is about to hand writer `fh` the cache file itself (passthrough).
    pub fn attach_external_writer(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh)?;
        let info = self.inode(handle.ino)?;
        let blob = Arc::clone(&handle.file.state().blob);
        blob.mark_dirty(&info.key)
            .map_err(|e| FsError::from_io("opening for writing", &info.key, e))?;
        let baseline = blob
            .local_len_and_mtime()
            .map_err(|e| FsError::from_io("opening for writing", &info.key, e))?;
        *lock(&handle.external_baseline) = Some(baseline);
        handle.file.external_writers.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes in the changes an external writer made since the last sync (see module docs).
    pub(crate) fn sync_external_writes(&self, handle: &FileHandle) -> FsResult<()> {
        let mut baseline = lock(&handle.external_baseline);
        let Some(previous) = *baseline else {
            return Ok(());
        };
        let mut state = handle.file.state();
        let key = || self.inode(handle.ino).map(|i| i.key).unwrap_or_default();
        let now = state
            .blob
            .local_len_and_mtime()
            .map_err(|e| FsError::from_io("checking", &key(), e))?;
        if now != previous {
            state.blob.detach_from_remote();
            state.blob.cover(now.0);
            state.size = now.0;
            state.mtime = now.1;
            state.dirty = true;
            *baseline = Some(now);
        } else if !state.dirty {
            // Nothing was written: the pessimistic dirty mark can go.
            state
                .blob
                .mark_clean()
                .map_err(|e| FsError::from_io("checking", &key(), e))?;
        }
        Ok(())
    }

    pub(crate) fn detach_external_writer(&self, handle: &FileHandle) {
        if lock(&handle.external_baseline).take().is_some() {
            handle.file.external_writers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The size to report while external writers are open: the cache file's.
    pub(crate) fn external_size(&self, file: &OpenFile) -> Option<u64> {
        if file.external_writers.load(Ordering::Relaxed) == 0 {
            return None;
        }
        file.state()
            .blob
            .local_len_and_mtime()
            .ok()
            .map(|(len, _)| len)
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
