//! azblobfs: mount an Azure Blob Storage container as a local directory through FUSE.
//!
//! Layers, top to bottom (data flows down, errors flow up with their errno):
//! - [`fuse`]: the FUSE adaptor. Translates kernel requests into calls on the core, runs them
//!   on the tokio runtime and replies when they finish; no business logic, no network.
//! - [`fs`]: the filesystem core. Inodes, directories, file handles, names; plain async
//!   methods that tests drive without a kernel.
//! - [`cache`]: blob properties (attributes), on-disk content, uploads of dirty files.
//! - [`store`]: the blob-store boundary; the only code that knows the Azure SDK.
//!
//! Around them: [`config`] (the resolved options), `cli`/`auth` (parsing the command line and
//! resolving credentials), [`mount`] (the life cycle of one mount: validate, mount, serve,
//! unmount).

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod mount;
pub mod store;
