//! The one error type of the filesystem core: an errno for the kernel plus a message that names
//! the blob and the cause for the log.
//!
//! The core builds these from [`StoreError`]s (keeping the HTTP status and Azure error code in
//! the message) and from local I/O errors; the FUSE adaptor logs the message at the error's
//! level and replies with the errno.

use std::fmt;

use crate::store::StoreError;

/// How loudly an error deserves to be logged: an ENOENT from `lookup` is routine, an upload
/// that failed is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Expected outcomes (ENOENT, EEXIST, ENOTEMPTY...): debug log only.
    Expected,
    /// Something went wrong that the user should hear about.
    Failure,
}

#[derive(Clone, Debug)]
pub struct FsError {
    pub errno: i32,
    pub message: String,
    pub severity: Severity,
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// A routine refusal (ENOENT, EEXIST, EROFS...).
    pub fn expected(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
            severity: Severity::Expected,
        }
    }

    /// A failure worth a warning in the log.
    pub fn failure(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
            severity: Severity::Failure,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::expected(libc::ENOENT, format!("'{what}' does not exist"))
    }

    /// Wraps a store error for the operation `action` on blob `blob`, choosing the errno that
    /// tells the user the most: EACCES for auth, ENOENT for a vanished blob, ESTALE for a blob
    /// that changed under us, EAGAIN for throttling, EIO for the rest.
    pub fn from_store(action: &str, blob: &str, err: StoreError) -> Self {
        let errno = match &err {
            StoreError::NotFound { .. } => libc::ENOENT,
            StoreError::AuthFailed { .. } => libc::EACCES,
            StoreError::PreconditionFailed { .. } => libc::ESTALE,
            StoreError::AlreadyExists { .. } => libc::EEXIST,
            StoreError::Throttled { .. } => libc::EAGAIN,
            StoreError::Unreachable { .. } | StoreError::Service { .. } | StoreError::Other(_) => {
                libc::EIO
            }
        };
        let severity = if errno == libc::ENOENT {
            Severity::Expected
        } else {
            Severity::Failure
        };
        FsError {
            errno,
            message: format!("{action} '{blob}': {err}"),
            severity,
        }
    }

    /// Wraps a local I/O error on the cache disk; a full disk becomes ENOSPC.
    pub fn from_io(action: &str, what: &str, err: std::io::Error) -> Self {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        FsError::failure(errno, format!("{action} '{what}' in the cache: {err}"))
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FsError {}
