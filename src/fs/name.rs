//! File names and blob names: which names can be files, and how a directory entry's name
//! joins its parent's blob prefix.
//!
//! Blob names are `/`-separated paths; a directory is the set of blobs under `dir/`. A name in
//! the filesystem is one path segment, preserved byte for byte (unicode, spaces, `%`, `#`, `?`,
//! `+`, `&`, `=` are ordinary characters). Segments that cannot be file names (empty, `.`,
//! `..`) make a blob unreachable through the mount; listings skip them.

use std::ffi::OsStr;

use crate::error::{FsError, FsResult};

/// Azure's limit on a blob name, in characters; we check bytes, which is stricter.
pub const MAX_BLOB_NAME: usize = 1024;
/// The longest single file name most Linux tools accept.
pub const MAX_SEGMENT: usize = 255;

/// Is `segment` usable as one file name?
pub fn is_valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && !segment.contains('/')
        && !segment.contains('\0')
        && segment.len() <= MAX_SEGMENT
}

/// Checks a name coming from the kernel (create, mkdir, rename target...).
pub fn segment_from_os(name: &OsStr) -> FsResult<&str> {
    let name = name.to_str().ok_or_else(|| {
        FsError::expected(
            libc::EINVAL,
            format!("{name:?} is not valid UTF-8, which blob names must be"),
        )
    })?;
    if name.len() > MAX_SEGMENT {
        return Err(FsError::expected(
            libc::ENAMETOOLONG,
            format!("'{name}' is longer than {MAX_SEGMENT} bytes"),
        ));
    }
    if !is_valid_segment(name) {
        return Err(FsError::expected(
            libc::EINVAL,
            format!("'{name}' cannot be a blob name"),
        ));
    }
    Ok(name)
}

/// Refuses blob names longer than the service accepts, before any data is written under one.
pub fn check_blob_name(key: &str) -> FsResult<()> {
    if key.len() > MAX_BLOB_NAME {
        return Err(FsError::expected(
            libc::ENAMETOOLONG,
            format!("a blob name is at most {MAX_BLOB_NAME} bytes; '{key}' is longer"),
        ));
    }
    Ok(())
}

/// The blob name of entry `segment` in the directory whose blob name is `dir` ("" = root of
/// the container).
pub fn join(dir: &str, segment: &str) -> String {
    if dir.is_empty() {
        segment.to_string()
    } else {
        format!("{dir}/{segment}")
    }
}

/// The listing prefix of directory `dir`: everything below it.
pub fn dir_prefix(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_ordinary() {
        for name in ["a b", "100%", "#1", "why?", "a+b&c=d", "café", "日本語"] {
            assert!(is_valid_segment(name), "{name}");
        }
        for name in ["", ".", "..", "a/b"] {
            assert!(!is_valid_segment(name), "{name:?}");
        }
    }

    #[test]
    fn join_respects_the_root() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("x/y", "a"), "x/y/a");
        assert_eq!(dir_prefix(""), "");
        assert_eq!(dir_prefix("x"), "x/");
    }
}
