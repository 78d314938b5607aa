//! The request counts of a live mount, for tests that assert what an operation cost.
//!
//! The daemon logs its counts at info level on SIGUSR1 (`src/mount.rs`):
//! `... request counts requests=list=N properties=N get=N get_bytes=N put=N put_bytes=N copy=N delete=N`.
//! [`request_counts`] sends the signal, waits for the new line in the mount's log and parses it.
//! Include it with `mod common; mod counts;` (it uses `common::Mount`).
#![allow(dead_code)]

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use azblobfs::store::counting::RequestSnapshot;

use crate::common::{tail, Mount};

/// How long the daemon may take to install its signal handler, or to log the counts.
const COUNTS_TIMEOUT: Duration = Duration::from_secs(15);

/// The message of the log line SIGUSR1 produces.
const COUNTS_MESSAGE: &str = "request counts";

/// How long the counts must stay unchanged to count as settled.
const SETTLE_INTERVAL: Duration = Duration::from_millis(150);

/// The daemon's request counters (cumulative since the mount started): the snapshot type the
/// daemon logs (its `Display` is the `list=N properties=N ...` part of the line).
pub type Counts = RequestSnapshot;

/// What the tests add to [`Counts`]: reading them back from a log line, and the difference of
/// two.
pub trait CountsExt: Sized {
    /// Parses the `requests=list=N properties=N ...` part of a log line; `None` unless all
    /// eight counters are there.
    fn parse(line: &str) -> Option<Self>;

    /// What happened between `earlier` and `self` (counters never go down: panics if one did).
    fn since(&self, earlier: &Self) -> Self;
}

impl CountsExt for Counts {
    fn parse(line: &str) -> Option<Counts> {
        let start = line.find("requests=")? + "requests=".len();
        let mut counts = Counts::default();
        let mut seen = 0u8;
        for pair in line[start..].split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let (field, bit) = match key {
                "list" => (&mut counts.list, 0),
                "properties" => (&mut counts.properties, 1),
                "get" => (&mut counts.get, 2),
                "get_bytes" => (&mut counts.get_bytes, 3),
                "put" => (&mut counts.put, 4),
                "put_bytes" => (&mut counts.put_bytes, 5),
                "copy" => (&mut counts.copy, 6),
                "delete" => (&mut counts.delete, 7),
                _ => continue,
            };
            *field = value;
            seen |= 1 << bit;
        }
        (seen == 0xff).then_some(counts)
    }

    fn since(&self, earlier: &Counts) -> Counts {
        let d = |now: u64, then: u64, what: &str| {
            now.checked_sub(then).unwrap_or_else(|| {
                panic!(
                    "request counter {what} went down: {then} -> {now} ({earlier:?} -> {self:?})"
                )
            })
        };
        Counts {
            list: d(self.list, earlier.list, "list"),
            properties: d(self.properties, earlier.properties, "properties"),
            get: d(self.get, earlier.get, "get"),
            get_bytes: d(self.get_bytes, earlier.get_bytes, "get_bytes"),
            put: d(self.put, earlier.put, "put"),
            put_bytes: d(self.put_bytes, earlier.put_bytes, "put_bytes"),
            copy: d(self.copy, earlier.copy, "copy"),
            delete: d(self.delete, earlier.delete, "delete"),
        }
    }
}

/// The lines of `log` that carry SIGUSR1 counts.
fn counts_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(COUNTS_MESSAGE) && l.contains("requests=list="))
        .collect()
}

/// The daemon's pid: the harness found it (by its command line) at mount time.
fn daemon_pid(m: &Mount) -> libc::pid_t {
    match m.pids() {
        [pid] => *pid as libc::pid_t,
        other => panic!(
            "expected exactly one azblobfs daemon for {}, found {other:?}",
            m.path().display()
        ),
    }
}

/// Whether process `pid` has a handler installed for `signal` (SigCgt in /proc/PID/status). A
/// SIGUSR1 that arrives before the daemon installs its handler would kill it.
fn catches_signal(pid: libc::pid_t, signal: libc::c_int) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (signal - 1)) != 0)
}

/// Sends SIGUSR1 to the mount's daemon and returns the counts it logs in answer.
pub fn request_counts(m: &Mount) -> Counts {
    let pid = daemon_pid(m);
    let deadline = Instant::now() + COUNTS_TIMEOUT;
    while !catches_signal(pid, libc::SIGUSR1) {
        assert!(
            Instant::now() < deadline,
            "the azblobfs daemon (pid {pid}) installed no SIGUSR1 handler within {COUNTS_TIMEOUT:?}"
        );
        sleep(Duration::from_millis(10));
    }
    let before = counts_lines(&m.log()).len();
    // SAFETY: plain kill(2) on the daemon of our own mount.
    let rc = unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert_eq!(
        rc,
        0,
        "kill(SIGUSR1) of pid {pid}: {}",
        std::io::Error::last_os_error()
    );
    loop {
        let log = m.log();
        let lines = counts_lines(&log);
        if lines.len() > before {
            let line = lines[lines.len() - 1];
            return Counts::parse(line)
                .unwrap_or_else(|| panic!("cannot parse the request counts line {line:?}"));
        }
        assert!(
            Instant::now() < deadline,
            "no new `{COUNTS_MESSAGE}` line in the log within {COUNTS_TIMEOUT:?} of SIGUSR1\n{}",
            tail(&log, 40)
        );
        sleep(Duration::from_millis(10));
    }
}

/// The counts once the daemon is quiet: requests still in flight (a background prefetch, a
/// download counted as its body streams in) would otherwise be split between two measurements.
/// Polls until two snapshots [`SETTLE_INTERVAL`] apart agree.
pub fn settled_counts(m: &Mount) -> Counts {
    let deadline = Instant::now() + COUNTS_TIMEOUT;
    let mut previous = request_counts(m);
    loop {
        sleep(SETTLE_INTERVAL);
        let current = request_counts(m);
        if current == previous {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "the request counts did not settle within {COUNTS_TIMEOUT:?}: {previous:?} -> {current:?}"
        );
        previous = current;
    }
}

/// Runs `op` and returns its result with the requests it cost: settled counts after minus
/// settled counts before, so what `op` started in the background is included.
pub fn measure<T>(m: &Mount, op: impl FnOnce() -> T) -> (T, Counts) {
    let before = settled_counts(m);
    let out = op();
    let after = settled_counts(m);
    (out, after.since(&before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_counts_line() {
        let line = "2025-01-01T00:00:00.000000Z  INFO azblobfs::mount: request counts \
                    requests=list=3 properties=4 get=5 get_bytes=6 put=7 put_bytes=8 copy=9 delete=10";
        assert_eq!(
            Counts::parse(line),
            Some(Counts {
                list: 3,
                properties: 4,
                get: 5,
                get_bytes: 6,
                put: 7,
                put_bytes: 8,
                copy: 9,
                delete: 10,
            })
        );
        assert_eq!(Counts::parse("request counts requests=list=3 get=1"), None);
    }
}
