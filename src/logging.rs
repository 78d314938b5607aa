//! Logging setup: one `tracing` subscriber for the whole process.
//!
//! Where the log goes: `--log-file FILE` (appended to) if given; else stderr in the foreground;
//! else, once daemonized (stderr is then `/dev/null`), syslog (facility `daemon`, ident
//! `azblobfs`), so that an upload failing hours after the mount is not lost without a trace.
//!
//! What is logged: `RUST_LOG`, when set, is the whole filter. Otherwise this crate logs at
//! `--log-level` and every dependency at `warn` at most. Keeping dependencies quiet is a
//! security measure, not just noise control: the Azure SDK logs request URLs at debug level,
//! and with SAS authentication those URLs carry the signature (`sig=`).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{self, IsTerminal};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriter};
use tracing_subscriber::EnvFilter;

/// `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Everything [`init`] needs, resolved by the CLI.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub level: LogLevel,
    /// The value of `RUST_LOG` when set and not empty; replaces `level` entirely.
    pub filter: Option<String>,
    /// `--log-file`, as an absolute path (the daemon changes its directory to `/`).
    pub file: Option<PathBuf>,
    /// Whether the process stays attached to its terminal (decides stderr versus syslog).
    pub foreground: bool,
    /// Informational messages from resolving the configuration, produced before logging
    /// existed (e.g. where the credentials came from); the caller logs them after [`init`].
    pub notes: Vec<String>,
    /// Warnings from the same stage (ignored flags, a world-readable secret file).
    pub warnings: Vec<String>,
}

/// The filter used when `RUST_LOG` is not set: this crate at `level`, dependencies no more
/// verbose than `warn`.
pub fn default_filter(level: LogLevel) -> String {
    let deps = match level {
        LogLevel::Error => "error",
        _ => "warn",
    };
    // fuser warns about every request it answers with ENOSYS by default and about unmounting
    // an already unmounted session: noise, not news.
    format!("{deps},fuser=error,azblobfs={}", level.as_str())
}

/// Installs the global subscriber (and the `log`-crate bridge, which fuser logs through) and a
/// panic hook that logs panics, since a daemon's stderr goes nowhere. Call once, after
/// daemonizing.
pub fn init(opts: &LogOptions) -> anyhow::Result<()> {
    let filter = match &opts.filter {
        // Not `.context()`: the parse error repeats its source, which would print it twice.
        Some(directives) => EnvFilter::builder()
            .parse(directives)
            .map_err(|e| anyhow::anyhow!("invalid RUST_LOG: {e}"))?,
        None => EnvFilter::builder()
            .parse(default_filter(opts.level))
            .context("invalid log filter")?,
    };

    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if let Some(path) = &opts.file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        builder
            .with_ansi(false)
            .with_writer(BoxMakeWriter::new(Mutex::new(file)))
            .try_init()
    } else if opts.foreground {
        builder
            .with_ansi(io::stderr().is_terminal())
            .with_writer(BoxMakeWriter::new(io::stderr))
            .try_init()
    } else {
        // SAFETY: the ident is a 'static C string, as openlog requires (it keeps the pointer).
        unsafe { libc::openlog(c"azblobfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        // syslog stamps each message itself.
        builder
            .with_ansi(false)
            .without_time()
            .with_writer(SyslogMakeWriter)
            .try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        default_hook(info);
    }));
    Ok(())
}

/// Hands each formatted event to syslog(3) with a priority matching its level.
struct SyslogMakeWriter;

impl<'a> MakeWriter<'a> for SyslogMakeWriter {
    type Writer = SyslogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        SyslogWriter::new(libc::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
        };
        SyslogWriter::new(priority)
    }
}

/// Collects one event (the formatter may write it in pieces) and sends it as one syslog
/// message when dropped.
struct SyslogWriter {
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl SyslogWriter {
    fn new(priority: libc::c_int) -> Self {
        SyslogWriter {
            priority,
            buf: Vec::new(),
        }
    }
}

impl io::Write for SyslogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogWriter {
    fn drop(&mut self) {
        let text: Vec<u8> = self
            .buf
            .iter()
            .copied()
            .filter(|&b| b != 0)
            .collect::<Vec<u8>>();
        let text = text.trim_ascii();
        if text.is_empty() {
            return;
        }
        if let Ok(message) = CString::new(text) {
            // SAFETY: both pointers are valid NUL-terminated strings for the duration of the
            // call, and the "%s" format keeps `%` in the message from being interpreted.
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), message.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_keeps_dependencies_at_warn() {
        assert_eq!(
            default_filter(LogLevel::Debug),
            "warn,fuser=error,azblobfs=debug"
        );
        assert_eq!(
            default_filter(LogLevel::Trace),
            "warn,fuser=error,azblobfs=trace"
        );
        assert_eq!(
            default_filter(LogLevel::Info),
            "warn,fuser=error,azblobfs=info"
        );
        assert_eq!(
            default_filter(LogLevel::Error),
            "error,fuser=error,azblobfs=error"
        );
    }

    #[test]
    fn default_filters_parse() {
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            assert!(EnvFilter::builder().parse(default_filter(level)).is_ok());
        }
    }
}
