//! The command line: `azblobfs [OPTIONS] <CONTAINER[/PREFIX]> <MOUNTPOINT>`, turned into a
//! [`MountConfig`] (plus the logging options).
//!
//! Every option is defined once, in [`Cli`]. mount(8)-style `-o opt[,opt...]` entries are
//! rewritten into the equivalent long options before clap sees the arguments, so `-o
//! cache_dir=/x` and `--cache-dir /x` are the same thing by construction: each long option is
//! also `-o name=value` (or `-o name` for a flag; `_` and `-` both work in names), plus the
//! mount(8) spellings `ro` (= `--read-only`) and `rw` (the default). Options that only mean
//! something to mount(8), fuse or systemd (`defaults`, `_netdev`, `nofail`, `x-systemd.*`,
//! `nodev`, `noatime`...) are accepted and ignored; anything else is an error that names it.
//! A repeated option takes its last value, as with mount(8).
//!
//! # Use from mount(8) and /etc/fstab
//!
//! With fuse3's `mount.fuse` helper installed (Debian: package `fuse3`), mount(8) handles type
//! `fuse.azblobfs` by running `azblobfs CONTAINER MOUNTPOINT -o OPTIONS` from `PATH`; a
//! `/sbin/mount.fuse.azblobfs` symlink to `azblobfs` works too (mount(8) then also passes
//! `-n`, `-s`, `-v` or `-t fuse.azblobfs`, which are ignored). Options may therefore follow
//! the positional arguments. An fstab line:
//!
//! ```text
//! mycontainer/some/prefix  /mnt/blobs  fuse.azblobfs  _netdev,nofail,allow_other,connection_string_file=/etc/azblobfs/conn  0  0
//! ```
//!
//! Without `--foreground` the command returns once the mount is live (see `daemon`), which is
//! what mount(8) and systemd expect. Note that `mount -f` (fake) cannot be honoured: `-f`
//! means `--foreground` here.
//!
//! No option carries a secret (credentials come from files or the environment, see `auth`), so
//! the command line seen in `ps` never needs scrubbing.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use crate::auth::{self, AuthOptions};
use crate::config::{Access, MountConfig};
use crate::logging::{LogLevel, LogOptions};
use crate::store::StoreConfig;

/// Azure's limit on blob names, which the prefix is the start of.
const MAX_PREFIX_LEN: usize = 1024;

const AFTER_HELP: &str = "\
Authentication (the first one given wins):
  1. --connection-string-file FILE, or env AZURE_STORAGE_CONNECTION_STRING
  2. an account key: --account-key-file FILE, or env AZURE_STORAGE_KEY / AZURE_STORAGE_ACCESS_KEY
  3. a SAS token: --sas-token-file FILE, or env AZURE_STORAGE_SAS_TOKEN
  4. --anonymous
  5. --emulator
  Methods 2-5 take the account from --account, else the --endpoint URL, else the emulator's
  devstoreaccount1 (with --emulator), else env AZURE_STORAGE_ACCOUNT.
  Secrets are never given on the command line.

Mount options (-o, mount(8) style):
  ro, rw, allow_other, allow_root, uid=N, gid=N, umask=NNN, and every long option above as
  name=value or name (e.g. -o emulator,cache_dir=/var/cache/x,attr_ttl=30).
  defaults, _netdev, nofail, auto, noauto, user, users, nodev, nosuid, dev, suid, exec,
  noexec, x-systemd.* and the atime options are accepted and ignored.

Environment:
  RUST_LOG    full tracing filter; overrides --log-level

/etc/fstab:
  mycontainer/prefix  /mnt/blobs  fuse.azblobfs  _netdev,nofail,connection_string_file=/etc/azblobfs.conn  0  0";

/// Mount an Azure Blob Storage container as a local directory.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "azblobfs",
    bin_name = "azblobfs",
    version,
    about,
    args_override_self = true,
    arg_required_else_help = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Container to mount, optionally with a blob-name prefix to show as the root
    #[arg(value_name = "CONTAINER[/PREFIX]")]
    pub source: OsString,

    /// Directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Mount options, comma-separated, mount(8) style (see below); may be repeated
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    pub mount_options: Vec<String>,

    /// Stay in the foreground [default: return once mounted and run in the background]
    #[arg(short, long)]
    pub foreground: bool,

    /// File holding a connection string (AccountKey or SharedAccessSignature form)
    #[arg(long, value_name = "FILE", help_heading = "Authentication")]
    pub connection_string_file: Option<PathBuf>,

    /// Storage account name [default: env AZURE_STORAGE_ACCOUNT]
    #[arg(long, value_name = "NAME", help_heading = "Authentication")]
    pub account: Option<String>,

    /// File holding the account key [default: env AZURE_STORAGE_KEY]
    #[arg(long, value_name = "FILE", help_heading = "Authentication")]
    pub account_key_file: Option<PathBuf>,

    /// File holding a SAS token [default: env AZURE_STORAGE_SAS_TOKEN]
    #[arg(long, value_name = "FILE", help_heading = "Authentication")]
    pub sas_token_file: Option<PathBuf>,

    /// No credentials: the container allows public read access
    #[arg(long, help_heading = "Authentication")]
    pub anonymous: bool,

    /// Use the Azurite emulator's well-known account, key and endpoint
    #[arg(long, help_heading = "Authentication")]
    pub emulator: bool,

    /// Blob service URL [default: https://ACCOUNT.blob.core.windows.net; with --emulator
    /// http://127.0.0.1:10000/ACCOUNT]
    #[arg(long, value_name = "URL", help_heading = "Authentication")]
    pub endpoint: Option<String>,

    /// Mount read-only
    #[arg(long, help_heading = "Mount")]
    pub read_only: bool,

    /// Let every user access the mount (needs user_allow_other in /etc/fuse.conf unless root)
    #[arg(long, conflicts_with = "allow_root", help_heading = "Mount")]
    pub allow_other: bool,

    /// Let root access the mount too
    #[arg(long, help_heading = "Mount")]
    pub allow_root: bool,

    /// Owner of every file and directory [default: the user running azblobfs]
    #[arg(long, value_name = "N", help_heading = "Mount")]
    pub uid: Option<u32>,

    /// Group of every file and directory [default: the group running azblobfs]
    #[arg(long, value_name = "N", help_heading = "Mount")]
    pub gid: Option<u32>,

    /// Permission bits of files, octal
    #[arg(long, value_name = "OCTAL", default_value = "644", value_parser = parse_mode, help_heading = "Mount")]
    pub file_mode: u16,

    /// Permission bits of directories, octal
    #[arg(long, value_name = "OCTAL", default_value = "755", value_parser = parse_mode, help_heading = "Mount")]
    pub dir_mode: u16,

    /// Bits to clear from --file-mode and --dir-mode, octal [default: 000]
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, help_heading = "Mount")]
    pub umask: Option<u16>,

    /// Directory for cached content [default: $XDG_CACHE_HOME/azblobfs, ~/.cache/azblobfs,
    /// or /var/cache/azblobfs for root]
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    pub cache_dir: Option<PathBuf>,

    /// Largest size of the content cache: bytes, or with K, M, G, T (binary) e.g. 512M, 10G
    /// [default: a share of the cache disk]
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Cache")]
    pub cache_size: Option<u64>,

    /// How long file attributes are cached, in seconds (fractions allowed, 0 = always ask)
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds, help_heading = "Cache")]
    pub attr_ttl: Duration,

    /// How long "no such file" answers are cached, in seconds
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds, help_heading = "Cache")]
    pub negative_ttl: Duration,

    /// Serve fully cached files through the daemon instead of letting the kernel read the
    /// cache file directly (FUSE passthrough, used when the kernel offers it and we are root)
    #[arg(long, help_heading = "Cache")]
    pub no_passthrough: bool,

    /// Log level of azblobfs itself (dependencies log warnings only; RUST_LOG overrides)
    #[arg(long, value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info, help_heading = "Logging")]
    pub log_level: LogLevel,

    /// Append the log to FILE [default: stderr in the foreground, syslog in the background]
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    pub log_file: Option<PathBuf>,

    // mount(8) passes these to /sbin/mount.TYPE helpers; they mean nothing here.
    #[arg(short = 'n', action = ArgAction::Count, hide = true)]
    pub helper_no_mtab: u8,
    #[arg(short = 's', action = ArgAction::Count, hide = true)]
    pub helper_sloppy: u8,
    #[arg(short = 'v', action = ArgAction::Count, hide = true)]
    pub helper_verbose: u8,
    #[arg(short = 't', value_name = "TYPE", hide = true)]
    pub helper_type: Option<String>,
}

/// Why the arguments could not be turned into a [`Cli`].
#[derive(Debug)]
pub enum CliError {
    /// `--help`, `--version`, or no arguments at all: clap's own output, printed as is.
    Display(clap::Error),
    /// A usage error, already one line.
    Usage(String),
}

impl CliError {
    fn from_clap(err: clap::Error) -> Self {
        use clap::error::ErrorKind;
        match err.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => CliError::Display(err),
            _ => CliError::Usage(one_line(&err)),
        }
    }

    /// Prints the error: help and version text to stdout as clap renders them, a usage error
    /// as one `azblobfs: <message>` line on stderr.
    pub fn print(&self) {
        match self {
            CliError::Display(err) => {
                let _ = err.print();
            }
            CliError::Usage(message) => eprintln!("azblobfs: {message}"),
        }
    }

    /// 0 for `--help`/`--version`, 2 for usage errors (clap's convention).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Display(err) => u8::try_from(err.exit_code()).unwrap_or(2),
            CliError::Usage(_) => 2,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Display(err) => write!(f, "{}", err.render()),
            CliError::Usage(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CliError {}

/// clap's errors span several lines (usage, tips); the contract is one line on stderr.
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let head = text.split("\n\n").next().unwrap_or_default();
    let head = head.trim();
    let head = head.strip_prefix("error:").unwrap_or(head);
    let joined: Vec<&str> = head
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see azblobfs --help)", joined.join(" "))
}

/// Parses the full argument list (program name first), expanding `-o` entries first.
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Cli, CliError> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.is_empty() {
        args.push(OsString::from("azblobfs"));
    }
    let mut cmd = Cli::command();
    cmd.build();
    let expanded = expand_mount_options(args, &cmd).map_err(CliError::Usage)?;
    let matches = cmd
        .try_get_matches_from_mut(expanded)
        .map_err(CliError::from_clap)?;
    Cli::from_arg_matches(&matches).map_err(CliError::from_clap)
}

/// Options mount(8), fuse or systemd add that have no meaning for azblobfs.
const IGNORED_FLAGS: &[&str] = &[
    "defaults",
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "rw",
    "async",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
];
/// The same, for options that come with a value (`user=NAME` is added by mount(8) for user
/// mounts; `fsname`/`subtype` are set by azblobfs itself).
const IGNORED_WITH_VALUE: &[&str] = &["user", "comment", "fsname", "subtype"];

fn is_ignored(name: &str, has_value: bool) -> bool {
    // x-* (x-systemd.*, x-gvfs-*...) are comments for userspace tools, per mount(8).
    if name.starts_with("x-") || name.starts_with("X-") {
        return true;
    }
    if has_value {
        IGNORED_WITH_VALUE.contains(&name)
    } else {
        IGNORED_FLAGS.contains(&name)
    }
}

/// Rewrites every `-o LIST` (also `-oLIST`, and `-o` at the end of a short-flag cluster like
/// `-fo LIST`) into long options, leaving everything else, including all values of other
/// options and everything after `--`, untouched.
fn expand_mount_options(args: Vec<OsString>, cmd: &clap::Command) -> Result<Vec<OsString>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    while let Some(arg) = iter.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            let takes_value = !long.contains(&b'=')
                && std::str::from_utf8(long).is_ok_and(|name| long_takes_value(cmd, name));
            out.push(arg);
            if takes_value {
                out.extend(iter.next());
            }
            continue;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            out.push(arg);
            continue;
        }
        // A cluster of short options: flags, then possibly one that takes a value.
        let cluster = &bytes[1..];
        let mut flags = 0;
        let mut value_option_at_end = false;
        let mut o_value: Option<OsString> = None;
        for (i, &c) in cluster.iter().enumerate() {
            if c == b'o' {
                let rest = &cluster[i + 1..];
                o_value = Some(if rest.is_empty() {
                    iter.next()
                        .ok_or_else(|| "option -o needs a value".to_string())?
                } else {
                    OsString::from_vec(rest.strip_prefix(b"=").unwrap_or(rest).to_vec())
                });
                break;
            }
            match short_takes_value(cmd, char::from(c)) {
                Some(false) => flags = i + 1,
                Some(true) => {
                    value_option_at_end = i + 1 == cluster.len();
                    break;
                }
                None => break,
            }
        }
        match o_value {
            Some(value) => {
                if flags > 0 {
                    let mut cluster_flags = b"-".to_vec();
                    cluster_flags.extend_from_slice(&cluster[..flags]);
                    out.push(OsString::from_vec(cluster_flags));
                }
                out.extend(expand_option_list(&value, cmd)?);
            }
            None => {
                out.push(arg);
                if value_option_at_end {
                    out.extend(iter.next());
                }
            }
        }
    }
    Ok(out)
}

fn find_long<'a>(cmd: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    if name == "help" || name == "version" {
        return None;
    }
    cmd.get_arguments().find(|a| a.get_long() == Some(name))
}

fn long_takes_value(cmd: &clap::Command, name: &str) -> bool {
    find_long(cmd, name).is_some_and(|a| a.get_action().takes_values())
}

fn short_takes_value(cmd: &clap::Command, c: char) -> Option<bool> {
    cmd.get_arguments()
        .find(|a| a.get_short() == Some(c))
        .map(|a| a.get_action().takes_values())
}

/// Splits `a,b="x,y",c` at commas outside double quotes (util-linux's quoting).
fn split_option_list(list: &[u8]) -> Vec<&[u8]> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in list.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// One `-o` value, as the equivalent long options.
fn expand_option_list(list: &OsStr, cmd: &clap::Command) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for item in split_option_list(list.as_bytes()) {
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item.iter().position(|&b| b == b'=') {
            Some(eq) => (&item[..eq], Some(&item[eq + 1..])),
            None => (item, None),
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(format!(
                "unknown mount option '{}'",
                String::from_utf8_lossy(name)
            ));
        };
        let value = value.map(|v| {
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        });
        if is_ignored(name, value.is_some()) {
            continue;
        }
        let long_name = if name == "ro" {
            "read-only".to_string()
        } else {
            name.replace('_', "-")
        };
        let Some(arg) = find_long(cmd, &long_name) else {
            return Err(format!("unknown mount option '{name}'"));
        };
        let long = arg.get_long().unwrap_or(&long_name);
        if arg.get_action().takes_values() {
            match value {
                Some(v) if !v.is_empty() => {
                    let mut token = format!("--{long}=").into_bytes();
                    token.extend_from_slice(v);
                    out.push(OsString::from_vec(token));
                }
                _ => return Err(format!("mount option '{name}' needs a value ({name}=...)")),
            }
        } else {
            if value.is_some() {
                return Err(format!("mount option '{name}' takes no value"));
            }
            out.push(OsString::from(format!("--{long}")));
        }
    }
    Ok(out)
}

/// Octal permission bits such as `644`, `0755` or `0o022`.
fn parse_mode(s: &str) -> Result<u16, String> {
    let digits = s.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!("'{s}' is not an octal number such as 644"));
    }
    match u16::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!("'{s}' is larger than 7777")),
    }
}

/// A byte count: plain bytes, or with a binary suffix K, M, G, T (optionally followed by `B`
/// or `iB`; case-insensitive), fractions allowed (`1.5G`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("'{s}' is not a size such as 1024, 512M or 10G")),
    };
    let multiplier: u64 = 1 << shift;
    let bytes = if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{s}' is not a size such as 1024, 512M or 10G"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("'{s}' is too large"));
        }
        bytes.round() as u64
    } else {
        let value: u64 = number
            .parse()
            .map_err(|_| format!("'{s}' is not a size such as 1024, 512M or 10G"))?;
        value
            .checked_mul(multiplier)
            .ok_or_else(|| format!("'{s}' is too large"))?
    };
    if bytes == 0 {
        return Err("the cache size must be larger than 0".to_string());
    }
    Ok(bytes)
}

/// Seconds as a non-negative decimal (`60`, `0.5`, `0`), optionally with an `s` suffix.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let text = text.strip_suffix('s').unwrap_or(text);
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{s}' is not a non-negative number of seconds"));
    }
    Duration::try_from_secs_f64(value).map_err(|_| format!("'{s}' is too large"))
}

/// Splits `CONTAINER[/PREFIX]` and checks both halves.
pub fn parse_source(source: &OsStr) -> Result<(String, String), String> {
    let Some(text) = source.to_str() else {
        return Err(format!(
            "'{}' is not valid UTF-8 (blob names are UTF-8)",
            source.to_string_lossy()
        ));
    };
    let text = text.trim_start_matches('/');
    let (container, prefix) = text.split_once('/').unwrap_or((text, ""));
    validate_container(container)?;
    let prefix = prefix.trim_matches('/');
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "prefix is longer than {MAX_PREFIX_LEN} bytes, Azure's limit for blob names"
        ));
    }
    if !prefix.is_empty() {
        for segment in prefix.split('/') {
            if segment.is_empty() {
                return Err(format!(
                    "prefix '{prefix}' contains an empty path segment ('//')"
                ));
            }
            if segment == "." || segment == ".." {
                return Err(format!(
                    "prefix '{prefix}' contains a '{segment}' segment; give the real blob-name prefix"
                ));
            }
        }
    }
    Ok((container.to_string(), prefix.to_string()))
}

/// Azure's rules: 3-63 lowercase letters, digits and single hyphens, starting and ending with
/// a letter or digit; or one of the special containers `$root`, `$web`, `$logs`.
pub fn validate_container(name: &str) -> Result<(), String> {
    if matches!(name, "$root" | "$web" | "$logs") {
        return Ok(());
    }
    if name.is_empty() {
        return Err("missing container name (CONTAINER[/PREFIX])".to_string());
    }
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "invalid container name '{name}': it must be 3 to 63 characters long"
        ));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "invalid container name '{name}': container names are lowercase"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "invalid container name '{name}': only lowercase letters, digits and hyphens are allowed"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "invalid container name '{name}': it must start and end with a letter or digit"
        ));
    }
    if name.contains("--") {
        return Err(format!(
            "invalid container name '{name}': it must not contain two hyphens in a row"
        ));
    }
    Ok(())
}

/// Paths are made absolute now because the daemon changes its directory to `/`.
fn absolute(path: &Path, what: &str) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err(format!("the {what} path is empty"));
    }
    std::path::absolute(path)
        .map_err(|e| format!("cannot resolve the {what} path {}: {e}", path.display()))
}

/// Resolves the parsed options (credentials included, which reads the secret files) into the
/// mount configuration and the logging options. `env` looks up environment variables, so
/// tests never touch the process environment.
pub fn to_mount_config(
    cli: Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(MountConfig, LogOptions), String> {
    let (container, prefix) = parse_source(&cli.source)?;
    let auth = auth::resolve(
        &AuthOptions {
            connection_string_file: cli.connection_string_file,
            account: cli.account,
            account_key_file: cli.account_key_file,
            sas_token_file: cli.sas_token_file,
            anonymous: cli.anonymous,
            emulator: cli.emulator,
            endpoint: cli.endpoint,
        },
        env,
    )?;
    let mountpoint = absolute(&cli.mountpoint, "mountpoint")?;

    let note = format!(
        "mounting {}/{container}{}{prefix} on {} using {}",
        auth.endpoint,
        if prefix.is_empty() { "" } else { "/" },
        mountpoint.display(),
        auth.source,
    );
    let store = StoreConfig {
        endpoint: auth.endpoint,
        container,
        credentials: auth.credentials,
    };
    let mut config = MountConfig::with_defaults(store, mountpoint);
    config.prefix = prefix;
    config.read_only = cli.read_only;
    config.access = if cli.allow_other {
        Access::All
    } else if cli.allow_root {
        Access::OwnerAndRoot
    } else {
        Access::Owner
    };
    if let Some(uid) = cli.uid {
        config.uid = uid;
    }
    if let Some(gid) = cli.gid {
        config.gid = gid;
    }
    let umask = cli.umask.unwrap_or(0);
    config.file_mode = cli.file_mode & !umask;
    config.dir_mode = cli.dir_mode & !umask;
    if let Some(dir) = &cli.cache_dir {
        config.cache_dir = absolute(dir, "cache directory")?;
    }
    config.cache_size = cli.cache_size;
    config.attr_ttl = cli.attr_ttl;
    config.negative_ttl = cli.negative_ttl;
    config.passthrough = !cli.no_passthrough;
    config.foreground = cli.foreground;

    let log = LogOptions {
        level: cli.log_level,
        filter: env("RUST_LOG").filter(|f| !f.trim().is_empty()),
        file: cli
            .log_file
            .as_deref()
            .map(|f| absolute(f, "log file"))
            .transpose()?,
        foreground: cli.foreground,
        notes: vec![note],
        warnings: auth.warnings,
    };
    Ok((config, log))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Credentials;

    const KEY: &str = "a2V5LWJ5dGVzLWZvci10ZXN0cw==";

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("azblobfs")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn parse(list: &[&str]) -> Cli {
        match parse_args(args(list)) {
            Ok(cli) => cli,
            Err(e) => panic!("{list:?}: {e}"),
        }
    }

    fn usage_error(list: &[&str]) -> String {
        match parse_args(args(list)) {
            Err(CliError::Usage(message)) => message,
            Err(other) => panic!("{list:?}: expected a usage error, got {other:?}"),
            Ok(cli) => panic!("{list:?}: expected an error, got {cli:?}"),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config(list: &[&str]) -> (MountConfig, LogOptions) {
        match to_mount_config(parse(list), &no_env) {
            Ok(c) => c,
            Err(e) => panic!("{list:?}: {e}"),
        }
    }

    #[test]
    fn defaults() {
        let (c, log) = config(&["--emulator", "ctr", "/mnt/x"]);
        assert_eq!(c.store.container, "ctr");
        assert_eq!(c.prefix, "");
        assert_eq!(c.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(c.store.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert!(!c.read_only);
        assert_eq!(c.access, Access::Owner);
        assert_eq!((c.file_mode, c.dir_mode), (0o644, 0o755));
        assert_eq!(c.attr_ttl, Duration::from_secs(60));
        assert_eq!(c.negative_ttl, Duration::from_secs(5));
        assert_eq!(c.cache_size, None);
        assert!(!c.foreground);
        assert_eq!(log.level, LogLevel::Info);
        assert_eq!(log.file, None);
        assert_eq!(log.filter, None);
        assert!(
            log.notes[0].contains("devstoreaccount1/ctr"),
            "{:?}",
            log.notes
        );
    }

    #[test]
    fn long_options() {
        let (c, log) = config(&[
            "--emulator",
            "-f",
            "--read-only",
            "--allow-root",
            "--uid",
            "1000",
            "--gid=100",
            "--file-mode",
            "0600",
            "--dir-mode",
            "700",
            "--cache-dir",
            "/var/cache/x",
            "--cache-size",
            "512M",
            "--attr-ttl",
            "0.5",
            "--negative-ttl",
            "0",
            "--log-level",
            "debug",
            "--log-file",
            "/var/log/azblobfs.log",
            "ctr/a/b/",
            "/mnt/x",
        ]);
        assert!(c.foreground && c.read_only);
        assert_eq!(c.access, Access::OwnerAndRoot);
        assert_eq!((c.uid, c.gid), (1000, 100));
        assert_eq!((c.file_mode, c.dir_mode), (0o600, 0o700));
        assert_eq!(c.cache_dir, PathBuf::from("/var/cache/x"));
        assert_eq!(c.cache_size, Some(512 << 20));
        assert_eq!(c.attr_ttl, Duration::from_millis(500));
        assert_eq!(c.negative_ttl, Duration::ZERO);
        assert_eq!(c.prefix, "a/b");
        assert_eq!(log.level, LogLevel::Debug);
        assert!(log.foreground);
        assert_eq!(log.file, Some(PathBuf::from("/var/log/azblobfs.log")));
    }

    #[test]
    fn relative_paths_become_absolute() {
        let (c, log) = config(&[
            "--emulator",
            "--cache-dir",
            "cache",
            "--log-file",
            "log.txt",
            "ctr",
            "mnt",
        ]);
        assert!(c.mountpoint.is_absolute() && c.mountpoint.ends_with("mnt"));
        assert!(c.cache_dir.is_absolute() && c.cache_dir.ends_with("cache"));
        assert!(log.file.is_some_and(|f| f.is_absolute()));
    }

    #[test]
    fn mount_style_options() {
        let (c, _) = config(&[
            "ctr",
            "/mnt/x",
            "-o",
            "emulator,ro,allow_other,uid=7,gid=8,umask=027,cache_dir=/var/cache/x,attr_ttl=30",
            "-o",
            "negative-ttl=2,cache_size=1G,foreground,no_passthrough",
        ]);
        assert!(c.read_only && c.foreground);
        assert!(!c.passthrough);
        assert_eq!(c.access, Access::All);
        assert_eq!((c.uid, c.gid), (7, 8));
        assert_eq!((c.file_mode, c.dir_mode), (0o640, 0o750));
        assert_eq!(c.cache_dir, PathBuf::from("/var/cache/x"));
        assert_eq!(c.attr_ttl, Duration::from_secs(30));
        assert_eq!(c.negative_ttl, Duration::from_secs(2));
        assert_eq!(c.cache_size, Some(1 << 30));
        assert!(matches!(
            c.store.credentials,
            Credentials::AccountKey { .. }
        ));
    }

    #[test]
    fn mount_options_attached_and_clustered() {
        assert!(parse(&["ctr", "/m", "-oro"]).read_only);
        assert!(parse(&["ctr", "/m", "-o=ro"]).read_only);
        let cli = parse(&["-fo", "ro,uid=3", "ctr", "/m"]);
        assert!(cli.foreground && cli.read_only);
        assert_eq!(cli.uid, Some(3));
    }

    #[test]
    fn mount_option_with_file_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn");
        std::fs::write(&path, format!("AccountName=fromfile;AccountKey={KEY}\n")).unwrap();
        let opt = format!("connection_string_file={}", path.display());
        let (c, _) = config(&["ctr", "/m", "-o", &opt]);
        assert_eq!(c.store.credentials.account(), "fromfile");
        assert_eq!(c.store.endpoint, "https://fromfile.blob.core.windows.net");
    }

    #[test]
    fn ignored_mount_and_systemd_options() {
        let cli = parse(&[
            "ctr",
            "/m",
            "-o",
            "defaults,_netdev,nofail,auto,noauto,user,users,x-systemd.automount,\
             x-systemd.requires=network-online.target,nodev,nosuid,exec,noexec,dev,suid,rw,\
             noatime,user=alice",
        ]);
        assert!(!cli.read_only);
        assert_eq!(cli.uid, None);
    }

    #[test]
    fn mount_helper_calling_convention() {
        // mount(8) running /sbin/mount.fuse.azblobfs: positionals first, then -n/-s/-v/-t.
        let cli = parse(&[
            "ctr/pre",
            "/mnt/x",
            "-n",
            "-s",
            "-v",
            "-o",
            "rw,emulator",
            "-t",
            "fuse.azblobfs",
        ]);
        assert!(cli.emulator);
        assert_eq!(cli.source, OsString::from("ctr/pre"));
        assert_eq!(cli.mountpoint, PathBuf::from("/mnt/x"));
    }

    #[test]
    fn unknown_mount_option_is_named() {
        let err = usage_error(&["ctr", "/m", "-o", "ro,bogus_opt=1"]);
        assert_eq!(err, "unknown mount option 'bogus_opt'");
        let err = usage_error(&["ctr", "/m", "-o", "sync"]);
        assert_eq!(err, "unknown mount option 'sync'");
        // --help is not a mount option.
        let err = usage_error(&["ctr", "/m", "-o", "help"]);
        assert_eq!(err, "unknown mount option 'help'");
    }

    #[test]
    fn mount_option_value_errors() {
        assert!(usage_error(&["ctr", "/m", "-o", "uid"]).contains("needs a value"));
        assert!(usage_error(&["ctr", "/m", "-o", "cache_dir="]).contains("needs a value"));
        assert!(usage_error(&["ctr", "/m", "-o", "allow_other=yes"]).contains("takes no value"));
        assert!(usage_error(&["ctr", "/m", "-o"]).contains("-o needs a value"));
        let err = usage_error(&["ctr", "/m", "-o", "uid=abc"]);
        assert!(err.contains("--uid"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = usage_error(&["ctr", "/m", "-o", "umask=999"]);
        assert!(err.contains("octal"), "{err}");
    }

    #[test]
    fn quoted_mount_option_values_keep_commas() {
        let cli = parse(&["ctr", "/m", "-o", "cache_dir=\"/tmp/a,b\",ro"]);
        assert_eq!(cli.cache_dir, Some(PathBuf::from("/tmp/a,b")));
        assert!(cli.read_only);
    }

    #[test]
    fn values_of_other_options_are_not_expanded() {
        let mut cmd = Cli::command();
        cmd.build();
        // "-o" as the value of --log-file or -t is left for clap (which wants --log-file=-o).
        for list in [
            &["--log-file", "-o", "ctr", "/m"][..],
            &["-t", "-o", "ctr", "/m"][..],
            &["--", "ctr", "-o"][..],
        ] {
            assert_eq!(expand_mount_options(args(list), &cmd), Ok(args(list)));
        }
        let cli = parse(&["--log-file=-o", "ctr", "/m"]);
        assert_eq!(cli.log_file, Some(PathBuf::from("-o")));
        // After "--" everything is positional.
        let cli = parse(&["--", "ctr", "-o"]);
        assert_eq!(cli.mountpoint, PathBuf::from("-o"));
    }

    #[test]
    fn last_repeated_option_wins() {
        let cli = parse(&["ctr", "/m", "-o", "uid=1", "--uid", "2"]);
        assert_eq!(cli.uid, Some(2));
        let cli = parse(&["ctr", "/m", "--uid", "2", "-o", "uid=1"]);
        assert_eq!(cli.uid, Some(1));
    }

    #[test]
    fn umask_applies_to_given_modes() {
        let (c, _) = config(&[
            "--emulator",
            "--file-mode",
            "666",
            "--dir-mode",
            "777",
            "--umask",
            "0022",
            "ctr",
            "/m",
        ]);
        assert_eq!((c.file_mode, c.dir_mode), (0o644, 0o755));
    }

    #[test]
    fn allow_other_and_allow_root_conflict() {
        let err = usage_error(&["--allow-other", "--allow-root", "ctr", "/m"]);
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn usage_errors_are_one_line() {
        let err = usage_error(&["ctr"]);
        assert!(err.contains("MOUNTPOINT"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = usage_error(&["--bogus", "ctr", "/m"]);
        assert!(err.contains("--bogus"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn help_and_version_are_displayed() {
        for flag in ["--help", "--version", "-V", "-h"] {
            match parse_args(args(&[flag])) {
                Err(e @ CliError::Display(_)) => assert_eq!(e.exit_code(), 0, "{flag}"),
                other => panic!("{flag}: {other:?}"),
            }
        }
        let Err(CliError::Display(help)) = parse_args(args(&["--help"])) else {
            panic!("no help");
        };
        let help = help.render().to_string();
        for needle in [
            "--connection-string-file",
            "[default: 644]",
            "[default: 60]",
            "[default: info]",
            "fuse.azblobfs",
        ] {
            assert!(help.contains(needle), "help lacks {needle}:\n{help}");
        }
    }

    #[test]
    fn container_and_prefix() {
        let ok = |s: &str| parse_source(OsStr::new(s)).unwrap();
        assert_eq!(ok("abc"), ("abc".into(), "".into()));
        assert_eq!(ok("abc/"), ("abc".into(), "".into()));
        assert_eq!(
            ok("my-container/a/b c/"),
            ("my-container".into(), "a/b c".into())
        );
        assert_eq!(ok("abc//x//"), ("abc".into(), "x".into()));
        assert_eq!(ok("$root/x"), ("$root".into(), "x".into()));
        assert_eq!(ok("$web"), ("$web".into(), "".into()));
        assert_eq!(ok(&"a".repeat(63)).0, "a".repeat(63));

        let err = |s: &str| parse_source(OsStr::new(s)).unwrap_err();
        assert!(err("").contains("missing container"));
        assert!(err("ab").contains("3 to 63"));
        assert!(err(&"a".repeat(64)).contains("3 to 63"));
        assert!(err("MyContainer").contains("lowercase"));
        assert!(err("my_container").contains("only lowercase letters"));
        assert!(err("-abc").contains("start and end"));
        assert!(err("abc-").contains("start and end"));
        assert!(err("ab--c").contains("two hyphens"));
        assert!(err("$other").contains("only lowercase letters"));
        assert!(err("abc/a//b").contains("empty path segment"));
        assert!(err("abc/a/../b").contains("'..'"));
        assert!(err("abc/./b").contains("'.'"));
        assert!(err(&format!("abc/{}", "x".repeat(1025))).contains("1024"));
    }

    #[test]
    fn source_errors_reach_to_mount_config() {
        let err = to_mount_config(parse(&["--emulator", "Bad", "/m"]), &no_env).unwrap_err();
        assert!(err.contains("invalid container name 'Bad'"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("1..5G").is_err());
    }

    #[test]
    fn modes_and_seconds() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o022"), Ok(0o022));
        assert_eq!(parse_mode("04755"), Ok(0o4755));
        assert!(parse_mode("8").is_err());
        assert!(parse_mode("17777").is_err());
        assert!(parse_mode("").is_err());
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn rust_log_from_env_overrides_level() {
        let env = |name: &str| (name == "RUST_LOG").then(|| "azblobfs=trace".to_string());
        let (_, log) = to_mount_config(parse(&["--emulator", "ctr", "/m"]), &env).unwrap();
        assert_eq!(log.filter.as_deref(), Some("azblobfs=trace"));
    }

    #[test]
    fn auth_through_the_cli_uses_injected_env() {
        let env = |name: &str| match name {
            "AZURE_STORAGE_ACCOUNT" => Some("envacct".to_string()),
            "AZURE_STORAGE_KEY" => Some(KEY.to_string()),
            _ => None,
        };
        let (c, log) = to_mount_config(parse(&["ctr", "/m"]), &env).unwrap();
        assert_eq!(c.store.credentials.account(), "envacct");
        assert_eq!(c.store.endpoint, "https://envacct.blob.core.windows.net");
        assert!(
            log.notes[0].contains("env AZURE_STORAGE_KEY"),
            "{:?}",
            log.notes
        );
        assert!(!log.notes[0].contains(KEY));

        // --account on the command line beats the environment's account.
        let (c, _) = to_mount_config(parse(&["--account", "cliacct", "ctr", "/m"]), &env).unwrap();
        assert_eq!(c.store.credentials.account(), "cliacct");

        let err = to_mount_config(parse(&["ctr", "/m"]), &no_env).unwrap_err();
        assert!(err.starts_with("no credentials given"), "{err}");
    }
}
