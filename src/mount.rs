//! The life of one mount: check the container, prepare the cache, mount through FUSE, report
//! readiness, serve until unmounted (by `umount` or SIGTERM/SIGINT), then upload whatever is
//! still dirty and report the request counts.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use tokio::runtime::Runtime;
use tracing::{debug, error, info, warn};

use crate::cache::attr::AttrCache;
use crate::cache::content::ContentCache;
use crate::config::{Access, MountConfig};
use crate::fs::{name, Fs, Presentation};
use crate::fuse::FuseAdaptor;
use crate::store::azure::AzureStore;
use crate::store::counting::{CountingStore, RequestCounts};
use crate::store::{BlobStore, Credentials, StoreError};

/// Longest we wait for the container check before calling the mount failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// FUSE request loops; requests are answered asynchronously, so a few suffice.
const FUSE_THREADS: usize = 4;
/// How long a mount waits for the previous mount of the same cache directory to finish.
const CACHE_LOCK_WAIT: Duration = Duration::from_secs(15);
/// Share of the free space on the cache disk used when `--cache-size` is not given.
const DEFAULT_CACHE_SHARE: f64 = 0.5;

/// Mounts and serves until unmounted. `on_ready` is called exactly once: with `Ok` when the
/// mount is live, or with the error message if it failed before that. Returns an error message
/// for a failed mount or for changes that could not be uploaded at the end.
pub fn run(config: MountConfig, on_ready: impl FnOnce(Result<(), &str>)) -> Result<(), String> {
    let mut on_ready = Some(on_ready);
    let mut report_failure = |message: String| {
        if let Some(ready) = on_ready.take() {
            ready(Err(&message));
        }
        message
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("azblobfs-io")
        .enable_all()
        .build()
        .map_err(|e| report_failure(format!("cannot start the I/O runtime: {e}")))?;
    let prepared = prepare(&config, &runtime).map_err(&mut report_failure)?;
    let adaptor = FuseAdaptor::new(
        Arc::clone(&prepared.fs),
        runtime.handle().clone(),
        config.passthrough,
    );
    let mut session = fuser::Session::new(adaptor, &config.mountpoint, &fuse_config(&config))
        .map_err(|e| {
            report_failure(format!(
                "cannot mount at '{}': {e}",
                config.mountpoint.display()
            ))
        })?;
    info!(
        container = %config.store.container,
        prefix = %config.prefix,
        mountpoint = %config.mountpoint.display(),
        "mounted"
    );
    raise_kernel_readahead(&config.mountpoint);
    if let Some(ready) = on_ready.take() {
        ready(Ok(()));
    }
    let unmounter = session.unmount_callable();
    runtime.spawn(handle_signals(
        unmounter,
        config.mountpoint.clone(),
        Arc::clone(&prepared.counts),
    ));
    let served = session.run();
    if let Err(e) = &served {
        error!("the FUSE session ended with an error: {e}");
    }
    let unsaved = runtime.block_on(prepared.fs.shutdown());
    info!(requests = %prepared.counts.snapshot(), "unmounted");
    runtime.shutdown_timeout(Duration::from_secs(5));
    if unsaved > 0 {
        return Err(format!(
            "{unsaved} file(s) could not be uploaded; their local copies are in {}",
            prepared.lost_and_found.display()
        ));
    }
    Ok(())
}

struct Prepared {
    fs: Arc<Fs>,
    counts: Arc<RequestCounts>,
    lost_and_found: PathBuf,
    /// Held for the life of the mount: one mount per cache directory.
    _cache_lock: File,
}

/// Everything before the kernel sees the mount: a failure here is a failed mount.
fn prepare(config: &MountConfig, runtime: &Runtime) -> Result<Prepared, String> {
    check_mountpoint(&config.mountpoint)?;
    let azure = AzureStore::new(&config.store).map_err(|e| describe_check_failure(config, e))?;
    let counting = CountingStore::new(azure);
    let counts = counting.counts();
    let store: Arc<dyn BlobStore> = Arc::new(counting);
    runtime.block_on(async {
        tokio::time::timeout(
            CHECK_TIMEOUT,
            check_container_and_prefix(config, store.as_ref()),
        )
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {} s",
                config.store.endpoint,
                CHECK_TIMEOUT.as_secs()
            )
        })?
    })?;
    let (cache_dir, cache_lock) = lock_cache_dir(config)?;
    let budget = config
        .cache_size
        .unwrap_or_else(|| default_cache_budget(&cache_dir));
    let content = ContentCache::new(cache_dir.join("data"), budget, Arc::clone(&store))
        .map_err(|e| format!("cannot use cache directory '{}': {e}", cache_dir.display()))?;
    let lost_and_found = content.lost_and_found();
    info!(cache = %cache_dir.display(), budget_bytes = budget, "content cache ready");
    let fs = Fs::new(
        store,
        &config.prefix,
        Arc::new(content),
        AttrCache::new(config.attr_ttl, config.negative_ttl),
        Presentation {
            uid: config.uid,
            gid: config.gid,
            file_mode: config.file_mode,
            dir_mode: config.dir_mode,
            read_only: config.read_only,
        },
    );
    Ok(Prepared {
        fs: Arc::new(fs),
        counts,
        lost_and_found,
        _cache_lock: cache_lock,
    })
}

fn check_mountpoint(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "mountpoint '{}' is not a directory",
            path.display()
        )),
        Err(e) => Err(format!("mountpoint '{}': {e}", path.display())),
    }
}

/// The container must exist and the credentials must work; a prefix must not name a file.
async fn check_container_and_prefix(
    config: &MountConfig,
    store: &dyn BlobStore,
) -> Result<(), String> {
    store
        .check_container()
        .await
        .map_err(|e| describe_check_failure(config, e))?;
    if config.prefix.is_empty() {
        return Ok(());
    }
    let below = store
        .list(&name::dir_prefix(&config.prefix), Some("/"), None, 1)
        .await
        .map_err(|e| describe_check_failure(config, e))?;
    if !below.blobs.is_empty() || !below.prefixes.is_empty() {
        return Ok(());
    }
    match store.properties(&config.prefix).await {
        Ok(blob) if !blob.is_dir_marker => Err(format!(
            "'{}' in container '{}' is a file, not a directory",
            config.prefix, config.store.container
        )),
        // An empty prefix is a valid, empty directory: files written there create it.
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(describe_check_failure(config, e)),
    }
}

/// One clear line for a failed mount-time check, never containing a secret.
fn describe_check_failure(config: &MountConfig, err: StoreError) -> String {
    let container = &config.store.container;
    let endpoint = &config.store.endpoint;
    let account = config.store.credentials.account();
    match err {
        StoreError::NotFound { .. } => {
            let hint = if matches!(config.store.credentials, Credentials::Anonymous { .. }) {
                " (or it does not allow anonymous access)"
            } else {
                ""
            };
            format!("container '{container}' not found at {endpoint}{hint}")
        }
        StoreError::AuthFailed { status, code } => format!(
            "authentication failed for account '{account}' ({status} {code}): check the {}",
            match config.store.credentials {
                Credentials::AccountKey { .. } => "account key",
                Credentials::SasToken { .. } => "SAS token (permissions, expiry)",
                Credentials::Anonymous { .. } => "container's public access level",
            }
        ),
        StoreError::Unreachable { reason, .. } => format!("cannot reach {endpoint}: {reason}"),
        StoreError::Throttled { status, code } => format!(
            "the storage account '{account}' is throttling requests ({status} {code}); try again later"
        ),
        other => format!("cannot use container '{container}' at {endpoint}: {other}"),
    }
}

/// The per-mount cache directory, `CACHE_DIR/<account>-<container>-<hash>`, locked so two
/// mounts never share one.
fn lock_cache_dir(config: &MountConfig) -> Result<(PathBuf, File), String> {
    use sha2::{Digest, Sha256};
    // A stable digest (not std's hasher, which may change between Rust releases): the same
    // container and prefix must find the same directory after an upgrade, dirty data included.
    let mut digest = Sha256::new();
    for part in [
        &config.store.endpoint,
        &config.store.container,
        &config.prefix,
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let digest = hex::encode(&digest.finalize()[..8]);
    let dir = config.cache_dir.join(format!(
        "{}-{}-{digest}",
        config.store.credentials.account(),
        config.store.container,
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create cache directory '{}': {e}", dir.display()))?;
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create '{}': {e}", lock_path.display()))?;
    // A mount of the same container that was just unmounted may still be finishing (uploads,
    // cache metadata) for a moment after `umount` returned: wait for it a little.
    let deadline = std::time::Instant::now() + CACHE_LOCK_WAIT;
    let locked = loop {
        // SAFETY: flock on a valid, open descriptor.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break true;
        }
        if std::time::Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !locked {
        return Err(format!(
            "cache directory '{}' is in use by another azblobfs mount of the same container; give this one its own --cache-dir",
            dir.display()
        ));
    }
    Ok((dir, lock))
}

fn default_cache_budget(dir: &Path) -> u64 {
    let available = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .ok()
        .and_then(|path| {
            let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: valid C string and a zeroed out-parameter of the right type.
            let ok = unsafe { libc::statvfs(path.as_ptr(), &mut stats) } == 0;
            ok.then(|| stats.f_bavail as u64 * stats.f_frsize as u64)
        })
        .unwrap_or(10 << 30);
    (available as f64 * DEFAULT_CACHE_SHARE) as u64
}

fn fuse_config(config: &MountConfig) -> Config {
    let mut options = vec![
        MountOption::FSName(format!("azblobfs:{}", config.store.container)),
        MountOption::Subtype("azblobfs".to_string()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.read_only {
        options.push(MountOption::RO);
    }
    let mut fuse = Config::default();
    fuse.mount_options = options;
    fuse.acl = match config.access {
        Access::Owner => SessionACL::Owner,
        Access::OwnerAndRoot => SessionACL::RootAndOwner,
        Access::All => SessionACL::All,
    };
    fuse.n_threads = Some(FUSE_THREADS);
    fuse.clone_fd = true;
    fuse
}

/// SIGTERM/SIGINT unmount (the session then ends and dirty files are uploaded); SIGUSR1 logs
/// the request counts so far.
async fn handle_signals(
    mut unmounter: fuser::SessionUnmounter,
    mountpoint: PathBuf,
    counts: Arc<RequestCounts>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        warn!("cannot install signal handlers; unmount with umount or fusermount3 -u");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => info!(requests = %counts.snapshot(), "request counts"),
        }
    }
    info!("signal received: unmounting");
    if let Err(e) = unmounter.unmount() {
        // Busy (files still open): detach now, the kernel finishes when they close.
        warn!("unmount failed ({e}); detaching lazily");
        lazy_unmount(&mountpoint);
    }
}

/// The kernel reads ahead only 128 KiB on a new FUSE mount, so a sequential reader costs a
/// round trip through the daemon per 128 KiB; 1 MiB (our largest request size) makes them 8x
/// fewer. The knob is the mount's backing-device setting, writable by root only; without it
/// everything still works, just with smaller reads.
fn raise_kernel_readahead(mountpoint: &Path) {
    const READ_AHEAD_KB: u32 = 1024;
    // Not stat(): that would be a request to this very filesystem, whose request loop has not
    // started yet. The mount table names the device without asking it.
    let Some(device) = fuse_device_of(mountpoint) else {
        debug!("kernel read-ahead left at its default: mount not found in mountinfo");
        return;
    };
    let knob = format!("/sys/class/bdi/{device}/read_ahead_kb");
    match std::fs::write(&knob, READ_AHEAD_KB.to_string()) {
        Ok(()) => debug!(knob, "kernel read-ahead raised to {READ_AHEAD_KB} KiB"),
        Err(e) => debug!(knob, "kernel read-ahead left at its default: {e}"),
    }
}

/// The `major:minor` of the newest FUSE mount at `mountpoint`, from /proc/self/mountinfo
/// (fields: id, parent, major:minor, root, mount point, ...; " - " then the fs type).
fn fuse_device_of(mountpoint: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = mountpoint.to_str()?;
    table
        .lines()
        .rev()
        .filter(|line| {
            let fs_type = line
                .split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next());
            fs_type.is_some_and(|t| t.starts_with("fuse"))
        })
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = unescape_mountinfo(fields.get(4)?);
            (point == wanted).then(|| fields.get(2).map(|d| d.to_string()))?
        })
        .next()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lazy_unmount(mountpoint: &Path) {
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid C string; MNT_DETACH needs no other argument.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/my\\040data"), "/mnt/my data");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
