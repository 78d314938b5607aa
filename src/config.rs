//! The resolved configuration of one mount: what the CLI produces and the rest of the program
//! consumes. Plain data, no parsing here (see `cli`), so tests can build it directly.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::StoreConfig;

/// Who may use the mount besides the user who mounted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    Owner,
    /// `allow_root`: the owner and root.
    OwnerAndRoot,
    /// `allow_other`: every user.
    All,
}

#[derive(Clone, Debug)]
pub struct MountConfig {
    pub store: StoreConfig,
    /// Blob-name prefix mounted as the root, without leading or trailing `/` ("" = whole container).
    pub prefix: String,
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub access: Access,
    /// Owner shown for every file and directory.
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of files and directories (already masked by `umask`).
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Directory for cached content; created if missing.
    pub cache_dir: PathBuf,
    /// Upper bound of the content cache in bytes; `None` = a share of the cache disk.
    pub cache_size: Option<u64>,
    /// How long cached blob properties (and the kernel's attributes) stay valid.
    pub attr_ttl: Duration,
    /// How long "this name does not exist" stays cached.
    pub negative_ttl: Duration,
    /// Let the kernel read fully cached files directly (FUSE passthrough) when it can.
    pub passthrough: bool,
    /// Stay in the foreground instead of daemonizing.
    pub foreground: bool,
}

impl MountConfig {
    /// A configuration with the documented defaults, for tests and for the CLI to start from.
    pub fn with_defaults(store: StoreConfig, mountpoint: PathBuf) -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        MountConfig {
            store,
            prefix: String::new(),
            mountpoint,
            read_only: false,
            access: Access::Owner,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            cache_dir: default_cache_dir(),
            cache_size: None,
            attr_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            passthrough: true,
            foreground: false,
        }
    }
}

/// `$XDG_CACHE_HOME/azblobfs` or `~/.cache/azblobfs`, else `/var/cache/azblobfs` for root or
/// system mounts without a home.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("azblobfs");
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/azblobfs");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("azblobfs"),
        None => PathBuf::from("/var/cache/azblobfs"),
    }
}
