//! Caches between the filesystem core and the blob store:
//! - [`attr`]: what is known about each blob name (file properties, directory, or absent), with
//!   TTLs, filled by listings and properties requests;
//! - [`content`]: blob content on the local disk, fetched in chunks on demand;
//! - [`persist`]: what of it survives a remount or a crash;
//! - [`upload`]: writing a cached file back as a blob (one request, or blocks in parallel).

pub mod attr;
pub mod content;
pub mod file_io;
pub mod persist;
pub mod upload;
