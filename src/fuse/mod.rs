//! The FUSE adaptor: implements `fuser::Filesystem` by translating each request into a call on
//! the filesystem core ([`Fs`]) and its result into a reply.
//!
//! Every request that may touch the network is spawned onto the tokio runtime and answered
//! from there (fuser's reply objects are `Send`), so the FUSE threads never wait on a download
//! and a slow blob does not stall `ls` or reads of other files. Errors are logged here, once,
//! at their severity, and answered with their errno.

mod io_mode;

use std::ffi::OsStr;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;
use tracing::{debug, warn};

use crate::error::{FsError, FsResult, Severity};
use crate::fs::inode::Kind;
use crate::fs::{Fs, Stat};
use io_mode::{IoModes, Reserved};

/// Largest write the kernel sends in one request: fewer, larger writes mean fewer round trips.
const MAX_WRITE: u32 = 1 << 20;
/// `st_blksize`: tools like `cp` size their buffers by it.
const PREFERRED_IO_SIZE: u32 = 128 << 10;

pub struct FuseAdaptor {
    fs: Arc<Fs>,
    runtime: Handle,
    /// The kernel's I/O mode of each open inode (see [`io_mode`]).
    modes: Arc<IoModes>,
    /// Set in `init` when the kernel accepts FUSE passthrough and it was not disabled.
    passthrough: bool,
    allow_passthrough: bool,
}

impl FuseAdaptor {
    pub fn new(fs: Arc<Fs>, runtime: Handle, allow_passthrough: bool) -> Self {
        FuseAdaptor {
            fs,
            runtime,
            modes: Arc::default(),
            passthrough: false,
            allow_passthrough,
        }
    }

    /// Runs `operation` on the runtime and hands its result to `reply`.
    fn spawn<T, Op, Fut>(&self, operation: Op, reply: impl FnOnce(FsResult<T>) + Send + 'static)
    where
        T: Send + 'static,
        Op: FnOnce(Arc<Fs>) -> Fut + Send + 'static,
        Fut: Future<Output = FsResult<T>> + Send + 'static,
    {
        let fs = Arc::clone(&self.fs);
        self.runtime
            .spawn(async move { reply(operation(fs).await) });
    }
}

/// Logs an error at its severity and turns it into the errno for the kernel.
fn errno(err: FsError) -> Errno {
    match err.severity {
        Severity::Expected => debug!(errno = err.errno, "{}", err.message),
        Severity::Failure => warn!(errno = err.errno, "{}", err.message),
    }
    Errno::from_i32(err.errno)
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn file_attr(stat: &Stat) -> FileAttr {
    let kind = file_type(stat.kind);
    FileAttr {
        ino: INodeNo(stat.ino),
        size: stat.size,
        blocks: stat.size.div_ceil(512),
        atime: stat.mtime,
        mtime: stat.mtime,
        ctime: stat.mtime,
        crtime: stat.mtime,
        kind,
        perm: stat.perm,
        nlink: if stat.kind == Kind::Dir { 2 } else { 1 },
        uid: stat.uid,
        gid: stat.gid,
        rdev: 0,
        blksize: PREFERRED_IO_SIZE,
        flags: 0,
    }
}

fn reply_entry(reply: ReplyEntry, ttl: Duration, result: FsResult<Stat>) {
    match result {
        Ok(stat) => reply.entry(&ttl, &file_attr(&stat), Generation(0)),
        Err(err) => reply.error(errno(err)),
    }
}

fn reply_attr(reply: ReplyAttr, ttl: Duration, result: FsResult<Stat>) {
    match result {
        Ok(stat) => reply.attr(&ttl, &file_attr(&stat)),
        Err(err) => reply.error(errno(err)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(err) => reply.error(errno(err)),
    }
}

impl Filesystem for FuseAdaptor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is an optimisation the kernel may not offer; without it we still work.
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            // Listings carry every entry's attributes: `ls -l` needs no lookup per entry.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(flag);
        }
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        if self.allow_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            debug!("FUSE passthrough enabled for fully cached files");
            self.passthrough = true;
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        let ttl = self.fs.attr_ttl();
        let negative_ttl = self.fs.negative_ttl();
        self.spawn(
            move |fs| async move { fs.lookup(parent.0, &name).await },
            move |result| match result {
                // A zero-inode entry tells the kernel to cache the absence for the TTL.
                Err(err) if err.errno == libc::ENOENT && !negative_ttl.is_zero() => {
                    debug!("{}", err.message);
                    let attr = FileAttr {
                        ino: INodeNo(0),
                        ..file_attr(&Stat {
                            ino: 0,
                            kind: Kind::File,
                            size: 0,
                            mtime: SystemTime::UNIX_EPOCH,
                            perm: 0,
                            uid: 0,
                            gid: 0,
                        })
                    };
                    reply.entry(&negative_ttl, &attr, Generation(0));
                }
                other => reply_entry(reply, ttl, other),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ttl = self.fs.attr_ttl();
        self.spawn(
            move |fs| async move { fs.getattr(ino.0).await },
            move |result| reply_attr(reply, ttl, result),
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ttl = self.fs.attr_ttl();
        self.spawn(
            move |fs| async move {
                match size {
                    Some(size) => fs.setattr_size(ino.0, size, fh.map(|f| f.0)).await,
                    None => fs.getattr(ino.0).await,
                }
            },
            move |result| reply_attr(reply, ttl, result),
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        let ttl = self.fs.attr_ttl();
        self.spawn(
            move |fs| async move { fs.mkdir(parent.0, &name).await },
            move |result| reply_entry(reply, ttl, result),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(
            move |fs| async move { fs.unlink(parent.0, &name).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(
            move |fs| async move { fs.rmdir(parent.0, &name).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.spawn(
            move |fs| async move {
                fs.rename(parent.0, &name, newparent.0, &newname, flags.bits())
                    .await
            },
            move |result| reply_empty(reply, result),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writer = (flags.0 & libc::O_ACCMODE != libc::O_RDONLY)
            .then(|| Reserved(self.modes.reserve_writer(ino.0)));
        let modes = Arc::clone(&self.modes);
        let passthrough = self.passthrough;
        self.spawn(
            move |fs| async move {
                let opened = fs.open(ino.0, flags.0).await?;
                Ok((fs, opened))
            },
            move |result| match result {
                Ok((fs, opened)) => {
                    let local_copy = opened.local_copy.filter(|_| passthrough);
                    let fh = opened.fh;
                    modes.answer_open(
                        ino.0,
                        FileHandle(fh),
                        writer,
                        opened.keep_cache,
                        local_copy,
                        || {
                            fs.attach_external_writer(fh).map_err(|err| {
                                // The kernel sends no release for a failed open.
                                let _ = fs.release(fh);
                                errno(err)
                            })
                        },
                        reply,
                    );
                }
                Err(err) => {
                    if writer.is_some_and(|r| r.0) {
                        modes.cancel_writer(ino.0);
                    }
                    reply.error(errno(err))
                }
            },
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_owned();
        let ttl = self.fs.attr_ttl();
        let modes = Arc::clone(&self.modes);
        self.spawn(
            move |fs| async move { fs.create(parent.0, &name, flags).await },
            move |result| match result {
                Ok((stat, fh)) => {
                    modes.created(stat.ino, FileHandle(fh));
                    reply.created(
                        &ttl,
                        &file_attr(&stat),
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                    )
                }
                Err(err) => reply.error(errno(err)),
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(
            move |fs| async move { fs.read(fh.0, offset, size).await },
            move |result| match result {
                Ok(data) => reply.data(&data),
                Err(err) => reply.error(errno(err)),
            },
        );
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(
            move |fs| async move { fs.write(fh.0, offset, data).await },
            move |result| match result {
                Ok(written) => reply.written(written),
                Err(err) => reply.error(errno(err)),
            },
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            move |fs| async move { fs.flush(fh.0).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.modes.release(fh);
        reply_empty(reply, self.fs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            move |fs| async move { fs.fsync(fh.0).await },
            move |result| reply_empty(reply, result),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Answered at once (no request of its own), but it may start listings ahead in the
        // background, which need the runtime.
        let _runtime = self.runtime.enter();
        match self.fs.opendir(ino.0) {
            Ok((fh, keep_cache)) => {
                // The kernel may cache listings; it drops its copy itself when the directory
                // changes through this mount, and without KEEP_CACHE at the next opendir.
                let mut flags = FopenFlags::FOPEN_CACHE_DIR;
                if keep_cache {
                    flags |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(fh), flags)
            }
            Err(err) => reply.error(errno(err)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(
            move |fs| async move { fs.readdir(fh.0, offset).await },
            move |result| match result {
                Ok(window) => {
                    for (offset, entry) in window.resume_points() {
                        if reply.add(
                            INodeNo(entry.ino),
                            offset,
                            file_type(entry.kind),
                            &entry.name,
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(err) => reply.error(errno(err)),
            },
        );
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.fs.attr_ttl();
        self.spawn(
            move |fs| async move { fs.readdir(fh.0, offset).await.map(|r| (fs, r)) },
            move |result| match result {
                Ok((fs, window)) => {
                    for (offset, entry) in window.resume_points() {
                        let stat = fs.readdirplus_entry(ino.0, entry);
                        let attr = file_attr(&stat);
                        if reply.add(attr.ino, offset, &entry.name, &ttl, &attr, Generation(0)) {
                            // Did not fit: the kernel never saw it, so it was not looked up.
                            if entry.name != "." && entry.name != ".." {
                                fs.forget(stat.ino, 1);
                            }
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(err) => reply.error(errno(err)),
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.releasedir(fh.0));
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are written through at once: nothing is pending.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A container has no fixed capacity; report plenty (1 PiB) so tools that check free
        // space before writing go ahead.
        const BLOCK: u32 = 4096;
        let blocks = (1u64 << 50) / u64::from(BLOCK);
        reply.statfs(blocks, blocks, blocks, 1 << 32, 1 << 32, BLOCK, 255, BLOCK);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // Blobs have no extended attributes. ENOSYS (not ENODATA) makes the kernel stop
        // asking for the rest of the mount, so `ls -l` costs no xattr round trips.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Permission bits are checked by the kernel (default_permissions); only writes to a
        // read-only mount are refused here.
        if mask.contains(AccessFlags::W_OK) && self.fs.is_read_only() {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
    }
}
