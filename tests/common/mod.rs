//! Integration-test harness: a fresh container in Azurite per test, and real mounts of it made
//! by the built `azblobfs` binary. Include it with `mod common;` from a file under `tests/`.
//!
//! Needs a running Azurite whose blob endpoint is in `AZBLOBFS_TEST_ENDPOINT` (e.g.
//! `http://127.0.0.1:10000/devstoreaccount1`); `scripts/test.sh` starts one and sets it. Without
//! it these tests panic rather than pass without having tested anything.
//!
//! ```ignore
//! let c = TestContainer::new();
//! c.put("hello.txt", b"hello\n");
//! let m = Mount::new(&c);                         // or Mount::builder(&c).read_only().mount()
//! assert_eq!(std::fs::read(m.path().join("hello.txt")).unwrap(), b"hello\n");
//! m.unmount();                                    // also done (best effort) on drop
//! ```
//!
//! Each test file uses only part of this module.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use azblobfs::store::azure::AzureStore;
use azblobfs::store::{BlobStore, Credentials, StoreConfig, StoreError, WriteCondition};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tempfile::TempDir;

/// The storage emulator's well-known development account (public, not a secret).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long `azblobfs` may take to mount (or to fail) before the test gives up.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the daemon may take to exit after its mount is gone (it uploads what is pending).
pub const DAEMON_EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables the binary might read credentials from; removed so the developer's
/// own environment cannot change what a test does.
const SCRUBBED_ENV: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_STORAGE_AUTH_MODE",
    "AZBLOBFS_ACCOUNT",
    "AZBLOBFS_KEY",
    "AZBLOBFS_SAS",
    "AZBLOBFS_CONNECTION_STRING",
];

/// The variable that holds the Azurite blob endpoint.
pub const ENDPOINT_VAR: &str = "AZBLOBFS_TEST_ENDPOINT";

/// The Azurite blob endpoint, from `AZBLOBFS_TEST_ENDPOINT`, or `None` when it is not set.
pub fn try_endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().trim_end_matches('/').to_owned()),
        _ => None,
    }
}

/// The Azurite blob endpoint, from `AZBLOBFS_TEST_ENDPOINT`. Panics when it is not set.
pub fn endpoint() -> String {
    try_endpoint()
        .unwrap_or_else(|| panic!("AZBLOBFS_TEST_ENDPOINT is not set: run scripts/test.sh"))
}

/// Path of the `azblobfs` binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_azblobfs")
}

/// One multi-threaded runtime shared by every helper of the test binary.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-store")
            .enable_all()
            .build()
            .expect("cannot build the tokio runtime")
    })
}

/// Runs a future to completion on the shared runtime (never call it from inside the runtime).
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// `len` random lowercase hex digits (seeded by the OS through `RandomState`).
pub fn random_hex(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

/// A store configuration for `container` in Azurite with the emulator account key.
pub fn store_config(container: &str) -> StoreConfig {
    StoreConfig {
        endpoint: endpoint(),
        container: container.to_owned(),
        credentials: Credentials::AccountKey {
            account: ACCOUNT.to_owned(),
            key: ACCOUNT_KEY.to_owned(),
        },
    }
}

/// A freshly created, uniquely named container, deleted (best effort) on drop.
pub struct TestContainer {
    name: String,
    config: StoreConfig,
    store: Arc<AzureStore>,
}

impl TestContainer {
    pub fn new() -> Self {
        // Container names: 3-63 characters, lowercase letters, digits and '-'.
        let name = format!("t{}", random_hex(24));
        let config = store_config(&name);
        let store = AzureStore::new(&config)
            .unwrap_or_else(|e| panic!("cannot configure the store for {name}: {e}"));
        block_on(store.create_container())
            .unwrap_or_else(|e| panic!("cannot create container {name} at {}: {e}", endpoint()));
        TestContainer {
            name,
            config,
            store: Arc::new(store),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn store(&self) -> &AzureStore {
        &self.store
    }

    /// The store as a shareable handle (for tests that spawn tasks).
    pub fn store_arc(&self) -> Arc<AzureStore> {
        Arc::clone(&self.store)
    }

    /// A container SAS token (no leading `?`) valid for an hour.
    pub fn sas_token(&self) -> String {
        self.store
            .container_sas_token(Duration::from_secs(3600))
            .expect("cannot make a SAS token")
    }

    /// Writes blob `name` unconditionally.
    pub fn put(&self, name: &str, data: &[u8]) {
        block_on(
            self.store
                .put(name, Bytes::copy_from_slice(data), &WriteCondition::None),
        )
        .unwrap_or_else(|e| panic!("cannot put blob {name:?}: {e}"));
    }

    /// Writes many blobs unconditionally, 64 requests in flight; panics at the first failure.
    pub fn put_many(&self, blobs: Vec<(String, Bytes)>) {
        let count = blobs.len();
        let started = Instant::now();
        block_on(
            futures::stream::iter(blobs)
                .map(|(name, body)| {
                    let store = Arc::clone(&self.store);
                    async move {
                        store
                            .put(&name, body, &WriteCondition::None)
                            .await
                            .map_err(|e| format!("cannot put blob {name:?}: {e}"))
                    }
                })
                .buffer_unordered(64)
                .try_for_each(|_| async { Ok(()) }),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let elapsed = started.elapsed();
        eprintln!("created {count} blobs in {elapsed:?}");
        if elapsed > Duration::from_secs(60) {
            eprintln!("note: creating {count} blobs took more than 60 s");
        }
    }

    /// Writes a directory marker blob (`hdi_isfolder=true`) named `name` (no trailing `/`).
    pub fn put_dir_marker(&self, name: &str) {
        block_on(self.store.put_dir_marker(name))
            .unwrap_or_else(|e| panic!("cannot put directory marker {name:?}: {e}"));
    }

    /// The whole content of blob `name`; panics if it does not exist.
    pub fn get(&self, name: &str) -> Vec<u8> {
        self.try_get(name)
            .unwrap_or_else(|| panic!("blob {name:?} does not exist in {}", self.name))
    }

    /// The whole content of blob `name`, or `None` if it does not exist.
    pub fn try_get(&self, name: &str) -> Option<Vec<u8>> {
        block_on(async {
            let props = match self.store.properties(name).await {
                Ok(p) => p,
                Err(e) if e.is_not_found() => return None,
                Err(e) => panic!("cannot get properties of blob {name:?}: {e}"),
            };
            if props.size == 0 {
                // A ranged GET of a 0-byte blob is an error (416).
                return Some(Vec::new());
            }
            let bytes = self
                .store
                .get_range(name, 0..props.size, Some(&props.etag))
                .await
                .unwrap_or_else(|e| panic!("cannot read blob {name:?}: {e}"));
            Some(bytes.to_vec())
        })
    }

    pub fn exists(&self, name: &str) -> bool {
        match block_on(self.store.properties(name)) {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("cannot get properties of blob {name:?}: {e}"),
        }
    }

    /// Size of blob `name`; panics if it does not exist.
    pub fn size(&self, name: &str) -> u64 {
        block_on(self.store.properties(name))
            .unwrap_or_else(|e| panic!("cannot get properties of blob {name:?}: {e}"))
            .size
    }

    /// Deletes blob `name`; panics unless it existed and was deleted.
    pub fn delete(&self, name: &str) {
        block_on(self.store.delete(name))
            .unwrap_or_else(|e| panic!("cannot delete blob {name:?}: {e}"));
    }

    /// Every blob name under `prefix` (no delimiter, all pages), in the service's order
    /// (lexicographic). Directory markers are included, named without a trailing `/`.
    pub fn list_all(&self, prefix: &str) -> Vec<String> {
        block_on(async {
            let mut names = Vec::new();
            let mut marker = None;
            loop {
                let page = self
                    .store
                    .list(prefix, None, marker, 5000)
                    .await
                    .unwrap_or_else(|e| panic!("cannot list {prefix:?}: {e}"));
                names.extend(page.blobs.into_iter().map(|b| b.name));
                marker = page.next_marker;
                if marker.is_none() {
                    return names;
                }
            }
        })
    }

    /// Polls until `cond` holds (e.g. an upload that happens in the background), up to
    /// `timeout`; panics with `what` otherwise.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting until {what}");
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Default for TestContainer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let result: Result<(), StoreError> = block_on(self.store.delete_container());
        if let Err(e) = result {
            eprintln!("note: could not delete test container {}: {e}", self.name);
        }
    }
}

/// What a finished `azblobfs` invocation left: exit code and its stdout/stderr.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` when killed by a signal (or by the harness after a timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with stdout/stderr captured in files (not pipes: a daemon that
/// forgot to close an inherited pipe must not hang the test), killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> RunOutput {
    let dir = TempDir::new().expect("cannot create a temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = fs::File::create(&out_path).expect("cannot create stdout file");
    let err = fs::File::create(&err_path).expect("cannot create stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot wait for {cmd:?}: {e}"),
        }
    };
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let mut stderr = read(&err_path);
    if status.is_none() {
        stderr.push_str(&format!("\n[harness: killed after {timeout:?}]"));
    }
    RunOutput {
        code: status.and_then(|s| s.code()),
        stdout: read(&out_path),
        stderr,
    }
}

/// A `Command` for the binary with a clean environment (no stray Azure credentials).
pub fn azblobfs_command() -> Command {
    let mut cmd = Command::new(binary());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// The arguments that point the binary at Azurite: `--emulator --endpoint <endpoint>`.
pub fn emulator_args() -> Vec<String> {
    vec!["--emulator".into(), "--endpoint".into(), endpoint()]
}

/// Runs `azblobfs ARGS` exactly as given and expects it to fail: returns (exit code, stderr).
/// Panics if it succeeds (after lazily unmounting whatever argument it mounted).
pub fn run_mount_expect_failure<S: AsRef<OsStr>>(args: &[S]) -> (i32, String) {
    let mut cmd = azblobfs_command();
    cmd.args(args);
    let out = run_with_timeout(cmd, MOUNT_TIMEOUT);
    if out.code == Some(0) {
        for arg in args {
            let path = Path::new(arg.as_ref());
            if is_mounted(path) {
                lazy_unmount(path);
            }
        }
        panic!(
            "azblobfs {:?} was expected to fail but exited 0\nstderr:\n{}",
            args.iter()
                .map(|a| a.as_ref().to_owned())
                .collect::<Vec<_>>(),
            out.stderr
        );
    }
    let code = out
        .code
        .unwrap_or_else(|| panic!("azblobfs was killed or timed out\nstderr:\n{}", out.stderr));
    (code, out.stderr)
}

/// Builder for a [`Mount`] with extra options.
pub struct MountBuilder {
    container: String,
    prefix: Option<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cache_dir: Option<PathBuf>,
    emulator: bool,
}

impl MountBuilder {
    /// Mount only blob names under `prefix` (`CONTAINER/PREFIX`).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.trim_matches('/').to_owned());
        self
    }

    pub fn read_only(self) -> Self {
        self.arg("--read-only")
    }

    /// `-o OPTS` (comma-separated mount options).
    pub fn option(self, opts: &str) -> Self {
        self.arg("-o").arg(opts)
    }

    /// Any other argument, placed before the positional ones.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for the binary.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Use this cache directory (e.g. shared by two mounts) instead of a fresh one.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Leave out `--emulator --endpoint ...` (the test passes its own credentials).
    pub fn without_emulator_args(mut self) -> Self {
        self.emulator = false;
        self
    }

    /// Mounts and panics (with stderr and the log) unless `azblobfs` exits 0 with a live mount.
    pub fn mount(self) -> Mount {
        match self.try_mount() {
            Ok(m) => m,
            Err(f) => panic!(
                "azblobfs failed to mount (exit {:?})\ncommand: {}\nstderr:\n{}\nlog:\n{}",
                f.code,
                f.command,
                f.stderr,
                tail(&f.log, 80)
            ),
        }
    }

    /// Mounts; on failure returns the exit code, stderr and log instead of panicking.
    pub fn try_mount(self) -> Result<Mount, MountFailure> {
        let dir = TempDir::new().expect("cannot create a temp dir");
        let base = dir
            .path()
            .canonicalize()
            .expect("cannot resolve the temp dir");
        let mountpoint = base.join("mnt");
        fs::create_dir(&mountpoint).expect("cannot create the mountpoint");
        let cache_dir = self.cache_dir.unwrap_or_else(|| base.join("cache"));
        let log_path = base.join("azblobfs.log");

        let target = match &self.prefix {
            Some(p) if !p.is_empty() => format!("{}/{p}", self.container),
            _ => self.container.clone(),
        };
        let mut cmd = azblobfs_command();
        if self.emulator {
            cmd.args(emulator_args());
        }
        cmd.arg("--cache-dir")
            .arg(&cache_dir)
            .arg("--log-file")
            .arg(&log_path)
            .arg("--log-level")
            .arg("debug")
            .args(&self.args)
            .arg(&target)
            .arg(&mountpoint);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let command = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("{:?}", a))
            .collect::<Vec<_>>()
            .join(" ");
        let out = run_with_timeout(cmd, MOUNT_TIMEOUT);
        let log = fs::read_to_string(&log_path).unwrap_or_default();

        if out.code != Some(0) {
            if is_mounted(&mountpoint) {
                // Failed but mounted anyway (or timed out after mounting): do not leak it.
                lazy_unmount(&mountpoint);
                kill_daemons(&mountpoint);
            }
            return Err(MountFailure {
                code: out.code,
                stderr: out.stderr,
                log,
                command,
            });
        }
        if !is_mounted(&mountpoint) {
            kill_daemons(&mountpoint);
            return Err(MountFailure {
                code: out.code,
                stderr: format!(
                    "{}\n[harness: azblobfs exited 0 but {} is not in /proc/mounts]",
                    out.stderr,
                    mountpoint.display()
                ),
                log,
                command,
            });
        }
        let pids = daemon_pids(&mountpoint);
        Ok(Mount {
            dir: Some(dir),
            mountpoint,
            cache_dir,
            log_path,
            pids,
            mounted: true,
        })
    }
}

/// Why [`MountBuilder::try_mount`] failed.
#[derive(Debug)]
pub struct MountFailure {
    /// `None` when the process was killed (timeout).
    pub code: Option<i32>,
    pub stderr: String,
    /// The `--log-file` content.
    pub log: String,
    pub command: String,
}

/// A live mount of a test container by the `azblobfs` daemon, unmounted on drop.
pub struct Mount {
    /// Holds mnt/, cache/ and the log; removed on drop, once unmounted.
    dir: Option<TempDir>,
    mountpoint: PathBuf,
    cache_dir: PathBuf,
    log_path: PathBuf,
    /// The daemon process(es) serving the mount.
    pids: Vec<u32>,
    mounted: bool,
}

impl Mount {
    /// Mounts the whole container with the default options.
    pub fn new(container: &TestContainer) -> Mount {
        Mount::builder(container).mount()
    }

    pub fn builder(container: &TestContainer) -> MountBuilder {
        MountBuilder {
            container: container.name().to_owned(),
            prefix: None,
            args: Vec::new(),
            envs: Vec::new(),
            cache_dir: None,
            emulator: true,
        }
    }

    /// The mountpoint (canonical, absolute).
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// PIDs of the daemon serving this mount (found at mount time).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub fn is_mounted(&self) -> bool {
        is_mounted(&self.mountpoint)
    }

    /// Unmounts (`umount`, falling back to `fusermount3 -u`), retrying briefly while busy, then
    /// waits for the daemon to exit. Panics (with the log) if either fails.
    pub fn unmount(mut self) {
        if let Err(e) = self.do_unmount() {
            panic!("{e}\nlog:\n{}", tail(&self.log(), 80));
        }
    }

    fn do_unmount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match try_unmount(&self.mountpoint) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    let hint = if e.contains("busy") {
                        " (a file, directory handle or cwd inside the mount is still open: \
                         drop it before unmount())"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "cannot unmount {}: {e}{hint}",
                        self.mountpoint.display()
                    ));
                }
                // EBUSY right after a close can be transient.
                Err(_) => sleep(Duration::from_millis(200)),
            }
        }
        self.mounted = false;
        if !wait_pids_gone(&self.pids, DAEMON_EXIT_TIMEOUT) {
            return Err(format!(
                "the azblobfs daemon (pids {:?}) did not exit within {DAEMON_EXIT_TIMEOUT:?} \
                 after unmounting {}",
                self.pids,
                self.mountpoint.display()
            ));
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "--- azblobfs log of {} (last 80 lines) ---\n{}\n--- end of log ---",
                self.mountpoint.display(),
                tail(&self.log(), 80)
            );
        }
        if self.mounted {
            if let Err(e) = self.do_unmount() {
                eprintln!("note: {e}; unmounting lazily");
                lazy_unmount(&self.mountpoint);
                self.mounted = false;
                if !wait_pids_gone(&self.pids, Duration::from_secs(5)) {
                    kill_pids(&self.pids);
                }
            }
        }
        if is_mounted(&self.mountpoint) {
            // Never remove a directory tree through a live mount: that would delete blobs.
            eprintln!(
                "note: {} is still mounted; leaving its temp dir",
                self.mountpoint.display()
            );
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}

/// Unmounts `path` once: `umount` (root), else `fusermount3 -u`.
pub fn try_unmount(path: &Path) -> Result<(), String> {
    let run = |prog: &str, args: &[&OsStr]| -> Result<(), String> {
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{prog}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(if stderr.is_empty() {
                format!("{prog} failed ({})", out.status)
            } else {
                stderr
            })
        }
    };
    let p = path.as_os_str();
    match run("umount", &[p]) {
        Ok(()) => Ok(()),
        Err(e1) => run("fusermount3", &[OsStr::new("-u"), p]).map_err(|e2| format!("{e1}; {e2}")),
    }
}

/// Detaches the mount at `path` even if busy or dead (`fusermount3 -u -z`, then `umount -l`).
pub fn lazy_unmount(path: &Path) {
    let ok = |prog: &str, args: &[&OsStr]| {
        Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let p = path.as_os_str();
    if !ok("fusermount3", &[OsStr::new("-u"), OsStr::new("-z"), p]) {
        ok("umount", &[OsStr::new("-l"), p]);
    }
}

/// Whether `path` is a mount point now (from `/proc/self/mounts`, which never touches the
/// possibly dead filesystem itself).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = fs::read("/proc/self/mounts") else {
        return false;
    };
    let target = path.as_os_str().as_bytes();
    mounts.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(1)
            .is_some_and(|field| unescape_mount_field(field) == target)
    })
}

/// Undoes the octal escapes (`\040` for a space, ...) of a `/proc/mounts` field.
fn unescape_mount_field(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let oct = &field[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// PIDs of `azblobfs` processes with `mountpoint` among their arguments.
pub fn daemon_pids(mountpoint: &Path) -> Vec<u32> {
    let me = std::process::id();
    let target = mountpoint.as_os_str().as_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|&b| b == 0);
            let is_azblobfs = args
                .next()
                .is_some_and(|argv0| argv0.ends_with(b"azblobfs"));
            is_azblobfs && args.any(|a| a == target)
        })
        .collect()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn pid_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until every pid is gone; false on timeout.
pub fn wait_pids_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| pid_gone(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
}

fn kill_pids(pids: &[u32]) {
    for &pid in pids {
        if !pid_gone(pid) {
            // SAFETY: plain kill(2) on a pid we started (the daemon of our own mount).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Ends the daemons serving `mountpoint` (SIGTERM, then SIGKILL after 5 s).
pub fn kill_daemons(mountpoint: &Path) {
    let pids = daemon_pids(mountpoint);
    for &pid in &pids {
        // SAFETY: plain kill(2) on the daemon of our own mount.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if !wait_pids_gone(&pids, Duration::from_secs(5)) {
        kill_pids(&pids);
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The names in directory `dir` (std::fs::read_dir), in the order read_dir gives them.
pub fn dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("entry of {}: {e}", dir.display()))
                .file_name()
                .into_string()
                .expect("UTF-8 file name")
        })
        .collect()
}

/// The names in directory `dir`, sorted (read_dir gives them in no particular order).
pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names = dir_names(dir);
    names.sort();
    names
}

pub fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `len` pseudo-random bytes (xorshift64*; fast, and different for each seed).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// `None` when `got` and `expected` are equal, else the index of their first difference (the
/// shorter length when one is a prefix of the other).
fn first_difference<T: PartialEq>(got: &[T], expected: &[T]) -> Option<usize> {
    (got != expected).then(|| {
        got.iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()))
    })
}

/// Asserts two byte strings are equal, naming the first difference (not dumping megabytes).
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], expected: &[u8], what: &str) {
    if let Some(first) = first_difference(got, expected) {
        panic!(
            "{what}: got {} bytes, expected {}; first difference at byte {first}",
            got.len(),
            expected.len()
        );
    }
}

/// Asserts two sorted name lists are equal, naming the first difference (not dumping 20,000
/// names).
#[track_caller]
pub fn assert_names_eq(got: &[String], expected: &[String], what: &str) {
    if let Some(first) = first_difference(got, expected) {
        panic!(
            "{what}: {} names, expected {}; first difference at index {first}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(first),
            expected.get(first)
        );
    }
}

/// The errno of a failed call; panics if it succeeded.
pub fn errno_of<T: std::fmt::Debug>(result: std::io::Result<T>, what: &str) -> i32 {
    match result {
        Ok(v) => panic!("{what} succeeded ({v:?}) but should have failed"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what} failed without an errno: {e}")),
    }
}

/// Asserts `result` failed with errno `expected`.
pub fn assert_errno<T: std::fmt::Debug>(result: std::io::Result<T>, expected: i32, what: &str) {
    let got = errno_of(result, what);
    assert_eq!(
        got,
        expected,
        "{what}: expected errno {expected} ({}), got {got} ({})",
        std::io::Error::from_raw_os_error(expected),
        std::io::Error::from_raw_os_error(got)
    );
}

/// Runs `python3 -c script ARGS...` and returns its stdout; panics (`{what} failed: stderr`)
/// unless it succeeds.
pub fn python3<S: AsRef<OsStr>>(script: &str, args: &[S], what: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("cannot run python3");
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
