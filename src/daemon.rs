//! Going to the background the way mount(8) expects: the command returns only once the mount is
//! live (exit 0), or with the reason it failed (one `azblobfs: <message>` line on stderr,
//! exit 1).
//!
//! [`daemonize`] forks with a pipe between the two processes. The parent blocks on the pipe;
//! the child detaches (new session, cwd `/`, stdin/stdout/stderr on `/dev/null`) and carries on
//! mounting, then reports through [`Readiness::report`]. The child's log goes to `--log-file`
//! or syslog (see `logging`), never to the terminal it was started from.
//!
//! Fork only copies the calling thread, so this must run before anything starts a thread (the
//! tokio runtime, fuser, a logging worker): `main` calls it right after parsing the options.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::unistd::{chdir, dup2, fork, pipe2, setsid, ForkResult};

/// Pipe message meaning "the mount is live".
const READY: u8 = b'R';
/// Pipe message prefix meaning "failed"; the UTF-8 error message follows.
const FAILED: u8 = b'F';

/// The child's end of the readiness pipe; in the foreground there is nobody to tell.
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<OwnedFd>,
}

impl Readiness {
    /// For `--foreground`: reporting does nothing.
    pub fn foreground() -> Self {
        Readiness { pipe: None }
    }

    /// Whether a waiting parent process will hear the report.
    pub fn is_daemon(&self) -> bool {
        self.pipe.is_some()
    }

    /// Tells the waiting parent how the mount went, which makes it exit (0 for `Ok`, 1 with
    /// the message printed for `Err`). Dropping a `Readiness` without reporting makes the
    /// parent print a generic "exited before the mount was ready" and exit 1.
    pub fn report(self, result: Result<(), &str>) {
        let Some(fd) = self.pipe else {
            return;
        };
        let mut message = Vec::new();
        match result {
            Ok(()) => message.push(READY),
            Err(text) => {
                message.push(FAILED);
                message.extend_from_slice(text.as_bytes());
            }
        }
        // The parent may have been killed meanwhile; there is nobody else to tell, and Rust
        // ignores SIGPIPE, so a failed write is simply dropped.
        let _ = File::from(fd).write_all(&message);
    }
}

/// Forks; returns only in the child (detached, holding the reporting end of the pipe). The
/// parent never returns: it exits once the child reports or dies.
pub fn daemonize() -> anyhow::Result<Readiness> {
    // CLOEXEC so that programs the daemon runs (fusermount3) do not hold the pipe open and keep
    // the parent waiting after the daemon itself has died.
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).context("cannot create the readiness pipe")?;
    // SAFETY: no other thread exists yet (see the module doc), so the child gets a consistent
    // copy of the process and may run arbitrary code.
    match unsafe { fork() }.context("cannot fork into the background")? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            std::process::exit(wait_for_child(read_end));
        }
        ForkResult::Child => {
            drop(read_end);
            let readiness = Readiness {
                pipe: Some(write_end),
            };
            let keep = readiness.pipe.as_ref().map(|fd| fd.as_raw_fd());
            if let Err(e) = detach(keep) {
                readiness.report(Err(&format!("cannot go to the background: {e:#}")));
                std::process::exit(1);
            }
            Ok(readiness)
        }
    }
}

/// Parent side: waits for the child's report and turns it into an exit code, printing the
/// error if there is one.
fn wait_for_child(read_end: OwnedFd) -> i32 {
    let mut pipe = File::from(read_end);
    let mut first = [0u8; 1];
    match pipe.read_exact(&mut first) {
        Ok(()) if first[0] == READY => 0,
        Ok(()) if first[0] == FAILED => {
            let mut rest = Vec::new();
            let _ = pipe.read_to_end(&mut rest);
            let text = String::from_utf8_lossy(&rest);
            let text = text.trim();
            if text.is_empty() {
                eprintln!("azblobfs: the mount failed (see the log)");
            } else {
                eprintln!("azblobfs: {text}");
            }
            1
        }
        _ => {
            eprintln!("azblobfs: mount process exited before the mount was ready (see the log)");
            1
        }
    }
}

/// Child side: leave the terminal's session so its hangup or Ctrl-C does not reach the mount,
/// release the working directory so it can be unmounted, stop writing to a terminal that may
/// be gone, and let go of descriptors inherited from the caller (a caller reading our output
/// through a pipe would otherwise wait for its end until the filesystem is unmounted).
fn detach(keep: Option<RawFd>) -> anyhow::Result<()> {
    setsid().context("setsid")?;
    chdir("/").context("chdir /")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("open /dev/null")?;
    for target in 0..=2 {
        dup2(null.as_raw_fd(), target)
            .with_context(|| format!("redirect fd {target} to /dev/null"))?;
    }
    if null.as_raw_fd() <= 2 {
        // It is now one of the standard descriptors (they were closed): keep it open.
        let _ = null.into_raw_fd();
    } else {
        // Before the sweep below, which would otherwise close it under the File's feet.
        drop(null);
    }
    close_inherited_fds(keep);
    Ok(())
}

/// Closes every descriptor above 2 except `keep`. Nothing else of ours is open yet (daemonize
/// runs first thing), so only inherited descriptors go. Without /proc this is skipped.
fn close_inherited_fds(keep: Option<RawFd>) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor is among them but already closed: close() then fails with
    // EBADF, which is harmless.
    for fd in fds {
        if fd > 2 && Some(fd) != keep {
            let _ = nix::unistd::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        pipe2(OFlag::O_CLOEXEC).unwrap()
    }

    fn read_all(fd: OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        File::from(fd).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn report_ok_writes_ready() {
        let (r, w) = pipe_pair();
        Readiness { pipe: Some(w) }.report(Ok(()));
        assert_eq!(read_all(r), vec![READY]);
    }

    #[test]
    fn report_err_writes_message() {
        let (r, w) = pipe_pair();
        Readiness { pipe: Some(w) }.report(Err("container not found"));
        let got = read_all(r);
        assert_eq!(got[0], FAILED);
        assert_eq!(&got[1..], b"container not found");
    }

    #[test]
    fn wait_for_child_exit_codes() {
        let (r, w) = pipe_pair();
        Readiness { pipe: Some(w) }.report(Ok(()));
        assert_eq!(wait_for_child(r), 0);

        let (r, w) = pipe_pair();
        Readiness { pipe: Some(w) }.report(Err("boom"));
        assert_eq!(wait_for_child(r), 1);

        // Dropped without a report: the child "died".
        let (r, w) = pipe_pair();
        drop(Readiness { pipe: Some(w) });
        assert_eq!(wait_for_child(r), 1);
    }

    #[test]
    fn foreground_report_is_a_no_op() {
        let r = Readiness::foreground();
        assert!(!r.is_daemon());
        r.report(Err("ignored"));
    }
}
