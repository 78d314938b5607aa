//! The `azblobfs` command: parse the options, go to the background (unless `--foreground`),
//! set up logging, then hand over to `mount::run` until the filesystem is unmounted.
//!
//! Exit codes: 0 once mounted (daemon) or after a clean unmount (foreground); 1 when the mount
//! failed; 2 for a usage or configuration error (bad option, unreadable secret file). Every
//! failure is one `azblobfs: <message>` line on stderr.
//!
//! The order matters: daemonizing forks, which is only safe before any thread exists, so it
//! comes before logging, the tokio runtime and fuser; and the configuration (including the
//! secret files and relative paths) is resolved before the daemon moves to `/`.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use azblobfs::daemon::{self, Readiness};
use azblobfs::{cli, logging, mount};

fn main() -> ExitCode {
    let cli = match cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => {
            err.print();
            return ExitCode::from(err.exit_code());
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let (config, log) = match cli::to_mount_config(cli, &env) {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("azblobfs: {message}");
            return ExitCode::from(2);
        }
    };
    let foreground = config.foreground;

    let readiness = if foreground {
        Readiness::foreground()
    } else {
        match daemon::daemonize() {
            Ok(readiness) => readiness,
            Err(err) => {
                eprintln!("azblobfs: {err:#}");
                return ExitCode::FAILURE;
            }
        }
    };

    if let Err(err) = logging::init(&log) {
        let message = format!("{err:#}");
        if readiness.is_daemon() {
            readiness.report(Err(&message));
        } else {
            eprintln!("azblobfs: {message}");
        }
        return ExitCode::FAILURE;
    }
    for note in &log.notes {
        tracing::info!("{note}");
    }
    for warning in &log.warnings {
        tracing::warn!("{warning}");
    }

    // Shared so that a failure returned without a report still reaches the waiting parent
    // with its message, instead of the generic "exited before the mount was ready".
    let pending = Arc::new(Mutex::new(Some(readiness)));
    let take = |pending: &Mutex<Option<Readiness>>| {
        pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    };
    let reporter = Arc::clone(&pending);
    let result = mount::run(config, move |outcome: Result<(), &str>| {
        if let Some(readiness) = take(&reporter) {
            readiness.report(outcome);
        }
    });

    match result {
        Ok(()) => {
            tracing::info!("unmounted");
            ExitCode::SUCCESS
        }
        Err(message) => {
            if let Some(readiness) = take(&pending) {
                // In the daemon this tells the parent, which prints it; in the foreground it
                // does nothing.
                readiness.report(Err(&message));
            }
            if foreground {
                // The one line the contract promises; the log (if it is a file) gets it too.
                eprintln!("azblobfs: {message}");
                if log.file.is_some() {
                    tracing::error!("{message}");
                }
            } else {
                tracing::error!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}
