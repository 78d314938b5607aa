//! File handles: what the kernel's `fh` numbers stand for, and each handle's read pattern
//! (sequential readers get growing read-ahead, random readers none).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{FsError, FsResult};
use crate::fs::file::OpenFile;

/// Tracks where a handle's next sequential read would start, and the read-ahead window.
#[derive(Debug, Default)]
pub struct ReadPattern {
    next_offset: u64,
    window: u64,
}

impl ReadPattern {
    /// Records a read of `offset..end` and returns how far past `end` to prefetch: the window
    /// doubles while reads continue where the last one ended, and drops to zero on a seek.
    pub fn next(&mut self, offset: u64, end: u64, initial: u64, max: u64) -> u64 {
        self.window = if offset == self.next_offset {
            if self.window == 0 {
                initial
            } else {
                (self.window * 2).min(max)
            }
        } else {
            0
        };
        self.next_offset = end;
        self.window
    }
}

pub struct FileHandle {
    pub ino: u64,
    pub file: Arc<OpenFile>,
    pub writable: bool,
    pattern: Mutex<ReadPattern>,
    /// For a writer whose writes go straight to the cache file (passthrough): the file's
    /// length and mtime when last synced, to notice changes.
    pub external_baseline: Mutex<Option<(u64, std::time::SystemTime)>>,
}

impl FileHandle {
    pub fn new(ino: u64, file: Arc<OpenFile>, writable: bool) -> Self {
        FileHandle {
            ino,
            file,
            writable,
            pattern: Mutex::new(ReadPattern::default()),
            external_baseline: Mutex::new(None),
        }
    }

    pub fn read_pattern<T>(&self, f: impl FnOnce(&mut ReadPattern) -> T) -> T {
        f(&mut self.pattern.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Handles by number. Numbers are never reused within a mount.
#[derive(Default)]
pub struct HandleTable<H> {
    next: AtomicU64,
    handles: Mutex<HashMap<u64, Arc<H>>>,
}

impl<H> HandleTable<H> {
    pub fn new() -> Self {
        HandleTable {
            next: AtomicU64::new(1),
            handles: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<H>>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, handle: H) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(fh, Arc::new(handle));
        fh
    }

    pub fn get(&self, fh: u64) -> FsResult<Arc<H>> {
        self.lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::expected(libc::EBADF, format!("no open handle {fh}")))
    }

    pub fn remove(&self, fh: u64) -> FsResult<Arc<H>> {
        self.lock()
            .remove(&fh)
            .ok_or_else(|| FsError::expected(libc::EBADF, format!("no open handle {fh}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_grows_while_sequential_and_stops_on_seek() {
        let mut pattern = ReadPattern::default();
        assert_eq!(pattern.next(0, 10, 4, 16), 4);
        assert_eq!(pattern.next(10, 20, 4, 16), 8);
        assert_eq!(pattern.next(20, 30, 4, 16), 16);
        assert_eq!(pattern.next(30, 40, 4, 16), 16);
        assert_eq!(pattern.next(1000, 1010, 4, 16), 0);
        assert_eq!(pattern.next(1010, 1020, 4, 16), 4);
    }
}
