//! The kernel's per-inode I/O mode, which the adaptor must respect when answering `open`.
//!
//! With FUSE passthrough, reads of a fully cached clean file go straight from the kernel to its
//! cache file. The kernel allows an inode to be open either through the page cache (reads and
//! writes come to the daemon) or through one backing file (passthrough), never both at once:
//! an open of the other kind fails. So every open of an inode with passthrough handles must be
//! passthrough again (with the same backing id), and passthrough is chosen only for an inode
//! with no cached-mode handles. Writers get cached mode (the daemon sees their writes), except
//! when the inode is already in passthrough mode: then they join it, and the core learns of
//! their writes by looking at the cache file (`fs::external`). Passthrough opens never ask to
//! keep the page cache: the kernel refuses the combination.

use std::collections::HashMap;
use std::sync::Mutex;

use fuser::{BackingId, Errno, FileHandle, FopenFlags, ReplyOpen};
use tracing::debug;

/// Whether [`IoModes::reserve_writer`] reserved a cached-mode slot for a writer.
#[derive(Clone, Copy, Debug)]
pub struct Reserved(pub bool);

#[derive(Default)]
struct InodeMode {
    /// Handles open through the page cache (reserved before the core opens them).
    cached: usize,
    passthrough: Option<(BackingId, Vec<FileHandle>)>,
}

#[derive(Default)]
pub struct IoModes {
    inodes: Mutex<HashMap<u64, InodeMode>>,
    /// Which inode each passthrough or cached handle belongs to, for `release`.
    handles: Mutex<HashMap<FileHandle, u64>>,
}

impl IoModes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, InodeMode>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a writer's open reaches the core: unless the inode is in passthrough mode
    /// (the writer will join it), reserves a cached-mode slot so no reader switches the inode
    /// to passthrough meanwhile. Returns whether a slot was reserved.
    pub fn reserve_writer(&self, ino: u64) -> bool {
        let mut inodes = self.lock();
        let mode = inodes.entry(ino).or_default();
        if mode.passthrough.is_some() {
            return false;
        }
        mode.cached += 1;
        true
    }

    /// The writer's open failed in the core: gives the reserved slot back.
    pub fn cancel_writer(&self, ino: u64) {
        let mut inodes = self.lock();
        if let Some(mode) = inodes.get_mut(&ino) {
            mode.cached = mode.cached.saturating_sub(1);
            if mode.cached == 0 && mode.passthrough.is_none() {
                inodes.remove(&ino);
            }
        }
    }

    /// Answers a successful open. A writer's slot, if `reserved`, came from
    /// [`Self::reserve_writer`]; `local_copy` is the complete cache file a reader may be served
    /// from directly; `attach_writer` tells the core a writer's writes will bypass it, and
    /// must succeed before the writer may join passthrough mode.
    #[allow(clippy::too_many_arguments)]
    pub fn answer_open(
        &self,
        ino: u64,
        fh: FileHandle,
        writer: Option<Reserved>,
        keep_cache: bool,
        local_copy: Option<std::fs::File>,
        attach_writer: impl FnOnce() -> Result<(), Errno>,
        reply: ReplyOpen,
    ) {
        let cached_flags = if keep_cache {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        let mut inodes = self.lock();
        let mode = inodes.entry(ino).or_default();
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, ino);
        if let Some((backing, handles)) = &mut mode.passthrough {
            // The inode is in passthrough mode: this open must be too, same backing file.
            if let Some(reserved) = writer {
                if let Err(errno) = attach_writer() {
                    if reserved.0 {
                        mode.cached = mode.cached.saturating_sub(1);
                    }
                    self.handles
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&fh);
                    reply.error(errno);
                    return;
                }
                if reserved.0 {
                    mode.cached = mode.cached.saturating_sub(1);
                }
            }
            handles.push(fh);
            reply.opened_passthrough(fh, FopenFlags::empty(), backing);
            return;
        }
        if let Some(reserved) = writer {
            if !reserved.0 {
                mode.cached += 1;
            }
            reply.opened(fh, cached_flags);
            return;
        }
        if mode.cached == 0 {
            if let Some(file) = local_copy {
                match reply.open_backing(&file) {
                    Ok(backing) => {
                        reply.opened_passthrough(fh, FopenFlags::empty(), &backing);
                        mode.passthrough = Some((backing, vec![fh]));
                        return;
                    }
                    Err(err) => debug!(ino, "passthrough unavailable: {err}"),
                }
            }
        }
        mode.cached += 1;
        reply.opened(fh, cached_flags);
    }

    /// A created file is open for writing through the page cache.
    pub fn created(&self, ino: u64, fh: FileHandle) {
        self.lock().entry(ino).or_default().cached += 1;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, ino);
    }

    pub fn release(&self, fh: FileHandle) {
        let Some(ino) = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
        else {
            return;
        };
        let mut inodes = self.lock();
        let Some(mode) = inodes.get_mut(&ino) else {
            return;
        };
        let was_passthrough = match &mut mode.passthrough {
            Some((_, handles)) if handles.contains(&fh) => {
                handles.retain(|h| *h != fh);
                true
            }
            _ => false,
        };
        if was_passthrough {
            if mode.passthrough.as_ref().is_some_and(|(_, h)| h.is_empty()) {
                // Dropping the id closes the backing file in the kernel.
                mode.passthrough = None;
            }
        } else {
            mode.cached = mode.cached.saturating_sub(1);
        }
        if mode.cached == 0 && mode.passthrough.is_none() {
            inodes.remove(&ino);
        }
    }
}
