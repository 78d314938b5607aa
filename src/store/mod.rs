//! The blob-store boundary: everything the filesystem needs from a blob service, as one trait.
//!
//! The filesystem core, the caches and the FUSE adaptor only ever see [`BlobStore`]; the only
//! code that knows the Azure SDK is [`azure`]. Swapping the SDK (or adding another backend)
//! means writing one new implementation of this trait. [`memory`] is an in-process
//! implementation for fast unit tests of the core.
//!
//! Names passed to the store are full blob names inside the container (the mount prefix is
//! already applied by the caller), never starting with `/`.

pub mod azure;
pub mod counting;
pub mod memory;

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

/// Metadata key Azure tools (blobfuse2, rclone, Storage Explorer) set on 0-byte directory markers.
pub const DIR_MARKER_METADATA_KEY: &str = "hdi_isfolder";

/// Properties of one blob, as returned by a listing or a properties (HEAD) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Full blob name inside the container.
    pub name: String,
    pub size: u64,
    pub last_modified: SystemTime,
    /// The ETag exactly as the service returned it (quotes included, if any).
    pub etag: String,
    /// A 0-byte blob carrying `hdi_isfolder=true`: shown as a directory, never as a file.
    pub is_dir_marker: bool,
}

/// One page of a delimited listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub blobs: Vec<BlobInfo>,
    /// Common prefixes ("sub-directories"), each ending with the delimiter.
    pub prefixes: Vec<String>,
    /// Continuation token; `None` on the last page.
    pub next_marker: Option<String>,
}

/// Precondition for a write, so an upload never clobbers a blob that changed remotely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteCondition {
    /// Unconditional write.
    None,
    /// Only if the blob does not exist yet (`If-None-Match: *`).
    DoesNotExist,
    /// Only if the blob still has this ETag (`If-Match`).
    Matches(String),
}

/// Result of a successful write: what the blob is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    pub etag: String,
    pub last_modified: SystemTime,
}

/// The reasons a store call fails, carrying what a user needs in an error message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found ({code})")]
    NotFound { code: String },
    #[error("authentication failed ({status} {code})")]
    AuthFailed { status: u16, code: String },
    #[error("the blob changed remotely ({status} {code})")]
    PreconditionFailed { status: u16, code: String },
    #[error("already exists ({code})")]
    AlreadyExists { code: String },
    #[error("throttled by the service ({status} {code})")]
    Throttled { status: u16, code: String },
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("service error ({status} {code}): {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The body of a ranged GET, piece by piece.
pub type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = StoreResult<Bytes>> + Send>>;

/// The blob service, seen from one container.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A human-readable description of where the container lives, e.g. `http://host/acct/ctr`.
    /// Used in error messages; never contains credentials.
    fn describe(&self) -> String;

    /// Checks that the credentials work and the container exists (one cheap request).
    async fn check_container(&self) -> StoreResult<()>;

    /// One page of the listing of `prefix`. With `delimiter = Some("/")` names below the next
    /// `/` are folded into `prefixes`.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage>;

    /// Properties of one blob; [`StoreError::NotFound`] when it does not exist.
    async fn properties(&self, name: &str) -> StoreResult<BlobInfo>;

    /// Bytes `range` of the blob (end exclusive), as they arrive, so a large range never sits
    /// whole in memory. With `if_match`, fails with [`StoreError::PreconditionFailed`] if the
    /// blob's ETag is no longer that one, so a reader never mixes two versions. Callers never
    /// ask for an empty range.
    async fn get_range_stream(
        &self,
        name: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream>;

    /// Bytes `range` of the blob, gathered in memory: for small ranges and tests.
    async fn get_range(
        &self,
        name: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<Bytes> {
        use futures::TryStreamExt;
        let parts: Vec<Bytes> = self
            .get_range_stream(name, range, if_match)
            .await?
            .try_collect()
            .await?;
        Ok(match parts.len() {
            1 => parts.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(parts.concat()),
        })
    }

    /// Writes a whole blob in one request.
    async fn put(
        &self,
        name: &str,
        body: Bytes,
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult>;

    /// Stages one block of a block blob. `block_id` is plain text of equal length for all the
    /// blocks of one blob; the implementation encodes it as the service needs.
    async fn put_block(&self, name: &str, block_id: &str, body: Bytes) -> StoreResult<()>;

    /// Commits staged blocks, in order, as the blob's content.
    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult>;

    /// Writes a 0-byte directory marker blob (`hdi_isfolder=true`).
    async fn put_dir_marker(&self, name: &str) -> StoreResult<WriteResult>;

    /// Server-side copy of `from` to `to`, waiting until the copy has completed.
    async fn copy(&self, from: &str, to: &str) -> StoreResult<WriteResult>;

    /// Deletes a blob; [`StoreError::NotFound`] when it does not exist.
    async fn delete(&self, name: &str) -> StoreResult<()>;
}

/// How the store authenticates. `Debug` never prints the secret.
#[derive(Clone)]
pub enum Credentials {
    AccountKey { account: String, key: String },
    SasToken { account: String, token: String },
    Anonymous { account: String },
}

impl Credentials {
    pub fn account(&self) -> &str {
        match self {
            Credentials::AccountKey { account, .. }
            | Credentials::SasToken { account, .. }
            | Credentials::Anonymous { account } => account,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::AccountKey { .. } => "account key",
            Credentials::SasToken { .. } => "SAS token",
            Credentials::Anonymous { .. } => "anonymous",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials({}, account={:?}, secret redacted)",
            self.kind(),
            self.account()
        )
    }
}

/// Where a container is and how to reach it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Blob service URL without the container, e.g. `https://acct.blob.core.windows.net` or
    /// `http://127.0.0.1:10000/devstoreaccount1`. No trailing `/`.
    pub endpoint: String,
    pub container: String,
    pub credentials: Credentials,
}
