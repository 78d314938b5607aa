//! [`BlobStore`] on Azure Blob Storage (or Azurite), through the legacy `azure_storage_blobs`
//! 0.21 SDK: the one module of the crate that knows the SDK.
//!
//! Besides the trait it offers a few inherent helpers (create/delete a container, make it
//! public, mint a container SAS) for tests, the demo seeding tool and benchmarks.
//!
//! Every SDK error goes through `AzureStore::map_error`, which classifies it into
//! [`StoreError`] and scrubs secrets: the SDK puts request URLs (SAS query included) into its
//! error texts, and those texts end up in logs and in messages shown to users.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::auth::Secret;
use azure_core::error::ErrorKind;
use azure_core::prelude::{IfMatchCondition, Metadata, NextMarker};
use azure_core::{ClientOptions, ExponentialRetryOptions, RetryOptions, TransportOptions};
use azure_storage::prelude::BlobSasPermissions;
use azure_storage::shared_access_signature::service_sas::{
    BlobSharedAccessSignature, BlobSignedResource,
};
use azure_storage::shared_access_signature::SasToken;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::blob::{BlobBlockType, BlockList, CopyStatus};
use azure_storage_blobs::prelude::{
    BlobClient, BlockId, ClientBuilder, ContainerClient, DeleteSnapshotsMethod, PublicAccess,
};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;

use super::{
    BlobInfo, BlobStore, ByteStream, Credentials, ListPage, StoreConfig, StoreError, StoreResult,
    WriteCondition, WriteResult, DIR_MARKER_METADATA_KEY,
};

/// A refused or unroutable endpoint must fail fast (the mount reports it), not after the SDK's
/// default of 8 retries over up to a minute. Io errors and 408/429/5xx are retried by the SDK
/// with these bounds: sleeps of ~0.5, ~1 and ~2 s, so a refused connection fails in about 4 s;
/// a black-holed host costs at most 3 connect timeouts plus the sleeps before the elapsed
/// bound stops it (about 8 s).
const MAX_RETRIES: u32 = 3;
const RETRY_INITIAL_DELAY: Duration = Duration::from_millis(250);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);
const RETRY_MAX_ELAPSED: Duration = Duration::from_secs(6);
/// The SDK's own reqwest client has no timeouts at all: a SYN to a black hole would wait for the
/// kernel's TCP retries (minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Detects a stalled connection. It runs from sending the request until the response headers
/// (so it also covers uploading a block of up to 64 MiB on a slow link), then per body read.
/// No total-request timeout: a large GET on a slow link is legitimately long.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The SDK's default client disables connection reuse (a workaround for an old hyper bug);
/// with today's hyper, reuse saves a TCP (and TLS) handshake per request. hyper drops pooled
/// connections the server has closed (Azurite closes idle ones after 5 s); the rare race left
/// is an Io error, which the retry policy absorbs.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A server-side copy inside one account is usually synchronous; a pending one is polled.
const COPY_POLL_INITIAL: Duration = Duration::from_millis(50);
const COPY_POLL_MAX: Duration = Duration::from_secs(2);
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// The service refuses more than 5,000 results per listing page.
const MAX_LIST_RESULTS: u32 = 5000;

const REDACTED: &str = "<redacted>";

/// An Azure Blob Storage container, seen through the SDK.
pub struct AzureStore {
    container: ContainerClient,
    /// Blob service URL without trailing `/`, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
    endpoint: String,
    container_name: String,
    credentials: Credentials,
    /// Strings that must never appear in an error message (key, SAS token and its signature).
    secrets: Vec<String>,
}

impl fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureStore")
            .field("container", &self.describe())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl AzureStore {
    /// Builds the client; no request is sent (see [`BlobStore::check_container`]).
    pub fn new(config: &StoreConfig) -> Result<Self, StoreError> {
        let endpoint = config.endpoint.trim().trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&endpoint).map_err(|e| {
            StoreError::Other(format!(
                "invalid endpoint URL {:?}: {e}",
                scrub(&endpoint, &[])
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(StoreError::Other(format!(
                "invalid endpoint URL {:?}: the scheme must be http or https",
                scrub(&endpoint, &[])
            )));
        }
        // Credentials in the endpoint would be echoed by describe() and by every error
        // message, so the URL is not quoted here either.
        if parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(StoreError::Other(
                "invalid endpoint URL: it must not carry a query, fragment or user info \
                 (pass a SAS token separately)"
                    .to_owned(),
            ));
        }
        if config.container.is_empty() || config.container.contains('/') {
            return Err(StoreError::Other(format!(
                "invalid container name {:?}",
                config.container
            )));
        }

        let mut secrets = Vec::new();
        let storage_credentials = match &config.credentials {
            Credentials::AccountKey { account, key } => {
                // The SDK only decodes the key when signing the first request, and its error
                // would then look like a data-conversion failure deep inside a request.
                if base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .is_err()
                {
                    return Err(StoreError::Other(
                        "the storage account key is not valid base64".to_owned(),
                    ));
                }
                secrets.push(key.trim().to_owned());
                StorageCredentials::access_key(account.clone(), Secret::new(key.trim().to_owned()))
            }
            Credentials::SasToken { token, .. } => {
                let token = token.trim().trim_start_matches('?').to_owned();
                secrets.extend(sas_secrets(&token));
                // The SDK's parse error quotes the whole token: do not pass its text on.
                StorageCredentials::sas_token(&token)
                    .map_err(|_| StoreError::Other("the SAS token cannot be parsed".to_owned()))?
            }
            Credentials::Anonymous { .. } => StorageCredentials::anonymous(),
        };

        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| StoreError::Other(format!("cannot build the HTTP client: {e}")))?;
        let options = ClientOptions::new(TransportOptions::new(Arc::new(http))).retry(
            RetryOptions::exponential(
                ExponentialRetryOptions::default()
                    .max_retries(MAX_RETRIES)
                    .initial_delay(RETRY_INITIAL_DELAY)
                    .max_delay(RETRY_MAX_DELAY)
                    .max_total_elapsed(RETRY_MAX_ELAPSED),
            ),
        );
        // BlobServiceClient::new would ignore the endpoint and target the public cloud.
        let location = CloudLocation::Custom {
            account: config.credentials.account().to_owned(),
            uri: endpoint.clone(),
        };
        let container = ClientBuilder::with_location(location, storage_credentials)
            .client_options(options)
            .container_client(config.container.clone());

        Ok(AzureStore {
            container,
            endpoint,
            container_name: config.container.clone(),
            credentials: config.credentials.clone(),
            secrets,
        })
    }

    /// Creates the container (private); succeeds if it already exists.
    pub async fn create_container(&self) -> StoreResult<()> {
        match self.container.create().await {
            Ok(()) => Ok(()),
            Err(e) => match self.map_error(e) {
                StoreError::AlreadyExists { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Creates the container with container-level public read access (anonymous list and get);
    /// if it already exists, makes it public.
    pub async fn create_container_public(&self) -> StoreResult<()> {
        match self
            .container
            .create()
            .public_access(PublicAccess::Container)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.map_error(e) {
                StoreError::AlreadyExists { .. } => self.set_public_access(true).await,
                other => Err(other),
            },
        }
    }

    /// Turns container-level public read access on or off.
    pub async fn set_public_access(&self, public: bool) -> StoreResult<()> {
        let access = if public {
            PublicAccess::Container
        } else {
            PublicAccess::None
        };
        self.container
            .set_acl(access)
            .await
            .map(|_| ())
            .map_err(|e| self.map_error(e))
    }

    /// Deletes the container and everything in it.
    pub async fn delete_container(&self) -> StoreResult<()> {
        self.container.delete().await.map_err(|e| self.map_error(e))
    }

    /// A container SAS token (no leading `?`) allowing read, add, create, write, delete and list
    /// for `valid_for`. Only possible with account-key credentials.
    pub fn container_sas_token(&self, valid_for: Duration) -> StoreResult<String> {
        let Credentials::AccountKey { account, key } = &self.credentials else {
            return Err(StoreError::Other(format!(
                "a SAS can only be generated with account-key credentials, not with {}",
                self.credentials.kind()
            )));
        };
        let permissions = BlobSasPermissions {
            read: true,
            add: true,
            create: true,
            write: true,
            delete: true,
            list: true,
            ..Default::default()
        };
        let expiry = OffsetDateTime::now_utc() + valid_for;
        BlobSharedAccessSignature::new(
            Secret::new(key.trim().to_owned()),
            format!("/blob/{account}/{}", self.container_name),
            permissions,
            expiry,
            BlobSignedResource::Container,
        )
        .token()
        .map_err(|_| StoreError::Other("cannot sign the SAS token".to_owned()))
    }

    /// `{endpoint}/{container}?{sas}`, e.g. for rclone's `sas_url`. See
    /// [`AzureStore::container_sas_token`].
    pub fn container_sas_url(&self, valid_for: Duration) -> StoreResult<String> {
        let token = self.container_sas_token(valid_for)?;
        Ok(format!("{}/{}?{token}", self.endpoint, self.container_name))
    }

    fn blob(&self, name: &str) -> BlobClient {
        self.container.blob_client(name)
    }

    /// Classifies an SDK error; the result never contains a key or SAS.
    fn map_error(&self, err: azure_core::Error) -> StoreError {
        if let ErrorKind::HttpResponse { status, error_code } = err.kind() {
            let status = u16::from(*status);
            let http = err.as_http_error();
            // HEAD responses have no body: the code then only exists in x-ms-error-code, which
            // the SDK already put into the kind.
            let code = error_code
                .clone()
                .or_else(|| http.and_then(|h| h.error_code().map(str::to_owned)))
                .unwrap_or_default();
            return classify_http(status, code, || {
                let message = http
                    .and_then(|h| h.error_message())
                    // Azure appends "RequestId:...\nTime:..." lines.
                    .and_then(|m| m.lines().next())
                    .map(str::to_owned)
                    .unwrap_or_else(|| error_chain(&err));
                scrub(&message, &self.secrets)
            });
        }
        let reason = scrub(&error_chain(&err), &self.secrets);
        match err.kind() {
            ErrorKind::Io => StoreError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason,
            },
            _ => StoreError::Other(reason),
        }
    }

    /// Like [`AzureStore::map_error`], then in the terms of the write's precondition.
    fn map_write_error(&self, err: azure_core::Error, condition: &WriteCondition) -> StoreError {
        write_error(self.map_error(err), condition)
    }

    fn blob_info(
        &self,
        name: String,
        size: u64,
        last_modified: OffsetDateTime,
        etag: &str,
        metadata: Option<&std::collections::HashMap<String, String>>,
    ) -> BlobInfo {
        BlobInfo {
            is_dir_marker: size == 0 && metadata.is_some_and(is_dir_marker_metadata),
            name,
            size,
            last_modified: SystemTime::from(last_modified),
            etag: normalize_etag(etag),
        }
    }

    async fn wait_for_copy(&self, from: &str, to: &str, copy_id: &str) -> StoreResult<WriteResult> {
        let deadline = tokio::time::Instant::now() + COPY_TIMEOUT;
        let mut delay = COPY_POLL_INITIAL;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(COPY_POLL_MAX);
            let props = self
                .blob(to)
                .get_properties()
                .await
                .map_err(|e| self.map_error(e))?;
            let p = &props.blob.properties;
            let same_copy = p
                .copy_id
                .as_ref()
                .is_none_or(|id| id.to_string() == copy_id);
            if !same_copy {
                return Err(StoreError::Other(format!(
                    "copy of {from:?} to {to:?} was superseded by another copy"
                )));
            }
            match &p.copy_status {
                Some(CopyStatus::Pending) => {}
                Some(CopyStatus::Success) | None => {
                    return Ok(WriteResult {
                        etag: normalize_etag(p.etag.as_ref()),
                        last_modified: SystemTime::from(p.last_modified),
                    })
                }
                Some(status @ (CopyStatus::Failed | CopyStatus::Aborted)) => {
                    return Err(StoreError::Other(format!(
                        "copy of {from:?} to {to:?} ended with status {status}: {}",
                        scrub(
                            p.copy_status_description
                                .as_deref()
                                .unwrap_or("no description"),
                            &self.secrets
                        )
                    )))
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Other(format!(
                    "copy of {from:?} to {to:?} did not complete within {} s",
                    COPY_TIMEOUT.as_secs()
                )));
            }
        }
    }
}

#[async_trait]
impl BlobStore for AzureStore {
    fn describe(&self) -> String {
        format!("{}/{}", self.endpoint, self.container_name)
    }

    async fn check_container(&self) -> StoreResult<()> {
        // A listing needs both a working credential and an existing container, and unlike the
        // container's properties it is allowed for a container SAS and for anonymous access to
        // a public container.
        let mut pages = self
            .container
            .list_blobs()
            .max_results(NonZeroU32::MIN)
            .into_stream();
        match pages.next().await {
            Some(Err(e)) => Err(self.map_error(e)),
            Some(Ok(_)) | None => Ok(()),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let mut builder = self.container.list_blobs().include_metadata(true);
        if !prefix.is_empty() {
            builder = builder.prefix(prefix.to_owned());
        }
        if let Some(delimiter) = delimiter {
            builder = builder.delimiter(delimiter.to_owned());
        }
        if let Some(max) = NonZeroU32::new(max_results.min(MAX_LIST_RESULTS)) {
            builder = builder.max_results(max);
        }
        if let Some(marker) = marker.filter(|m| !m.is_empty()) {
            builder = builder.marker(NextMarker::new(marker));
        }
        // The stream follows NextMarker by itself; taking only its first item sends exactly
        // one request and leaves paging to the caller.
        let mut pages = builder.into_stream();
        let page = match pages.next().await {
            Some(page) => page.map_err(|e| self.map_error(e))?,
            None => return Ok(ListPage::default()),
        };
        let blobs = page
            .blobs
            .blobs()
            .filter(|b| !b.deleted.unwrap_or(false))
            .map(|b| {
                self.blob_info(
                    b.name.clone(),
                    b.properties.content_length,
                    b.properties.last_modified,
                    b.properties.etag.as_ref(),
                    b.metadata.as_ref(),
                )
            })
            .collect();
        let prefixes = page.blobs.prefixes().map(|p| p.name.clone()).collect();
        Ok(ListPage {
            blobs,
            prefixes,
            next_marker: page
                .next_marker
                .map(|m| m.as_str().to_owned())
                .filter(|m| !m.is_empty()),
        })
    }

    async fn properties(&self, name: &str) -> StoreResult<BlobInfo> {
        let props = self
            .blob(name)
            .get_properties()
            .await
            .map_err(|e| self.map_error(e))?;
        let b = props.blob;
        Ok(self.blob_info(
            name.to_owned(),
            b.properties.content_length,
            b.properties.last_modified,
            b.properties.etag.as_ref(),
            b.metadata.as_ref(),
        ))
    }

    async fn get_range_stream(
        &self,
        name: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream> {
        // The service answers 416 to a GET of nothing (and to any GET of a 0-byte blob).
        if range.end <= range.start {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let len = range.end - range.start;
        // One chunk as large as the range: one call is one HTTP request, whose body is then
        // passed on as it arrives.
        let mut builder = self.blob(name).get().range(range).chunk_size(len);
        if let Some(etag) = if_match {
            builder = builder.if_match(IfMatchCondition::Match(etag.to_owned()));
        }
        let mut chunks = builder.into_stream();
        let response = match chunks.next().await {
            Some(response) => response.map_err(|e| self.map_error(e))?,
            None => return Ok(Box::pin(futures::stream::empty())),
        };
        let secrets = self.secrets.clone();
        let endpoint = self.endpoint.clone();
        Ok(Box::pin(response.data.map(move |piece| {
            piece.map_err(|e| StoreError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!(
                    "the download broke off: {}",
                    scrub(&error_chain(&e), &secrets)
                ),
            })
        })))
    }

    async fn put(
        &self,
        name: &str,
        body: Bytes,
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        let mut builder = self.blob(name).put_block_blob(body);
        if let Some(c) = if_match_condition(condition) {
            builder = builder.if_match(c);
        }
        let r = builder
            .await
            .map_err(|e| self.map_write_error(e, condition))?;
        Ok(write_result(&r.etag, r.last_modified))
    }

    async fn put_block(&self, name: &str, block_id: &str, body: Bytes) -> StoreResult<()> {
        // BlockId base64-encodes the raw bytes itself (in the URL and in the block list).
        self.blob(name)
            .put_block(BlockId::new(block_id.to_owned()), body)
            .await
            .map(|_| ())
            .map_err(|e| self.map_error(e))
    }

    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        let block_list = BlockList {
            blocks: block_ids
                .iter()
                .map(|id| BlobBlockType::new_latest(BlockId::new(id.clone())))
                .collect(),
        };
        let mut builder = self.blob(name).put_block_list(block_list);
        if let Some(c) = if_match_condition(condition) {
            builder = builder.if_match(c);
        }
        let r = builder
            .await
            .map_err(|e| self.map_write_error(e, condition))?;
        Ok(write_result(&r.etag, r.last_modified))
    }

    async fn put_dir_marker(&self, name: &str) -> StoreResult<WriteResult> {
        // Unconditional, like mkdir in blobfuse2/rclone: the core checks for a file of that
        // name before it asks for a marker.
        let mut metadata = Metadata::new();
        metadata.insert(DIR_MARKER_METADATA_KEY, "true");
        let r = self
            .blob(name)
            .put_block_blob(Bytes::new())
            .metadata(metadata)
            .await
            .map_err(|e| self.map_error(e))?;
        Ok(write_result(&r.etag, r.last_modified))
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<WriteResult> {
        let mut source = self.blob(from).url().map_err(|e| self.map_error(e))?;
        // The copy source is fetched by the service itself: with a SAS it needs the SAS in its
        // URL. With an account key the destination's SharedKey authorises a same-account source.
        if let Credentials::SasToken { token, .. } = &self.credentials {
            source.set_query(Some(token.trim().trim_start_matches('?')));
        }
        let r = self
            .blob(to)
            .copy(source)
            .await
            .map_err(|e| self.map_error(e))?;
        match r.copy_status {
            CopyStatus::Success => Ok(write_result(&r.etag, r.last_modified)),
            CopyStatus::Pending => self.wait_for_copy(from, to, &r.copy_id.to_string()).await,
            status => Err(StoreError::Other(format!(
                "copy of {from:?} to {to:?} ended with status {status}"
            ))),
        }
    }

    async fn delete(&self, name: &str) -> StoreResult<()> {
        self.blob(name)
            .delete()
            .delete_snapshots_method(DeleteSnapshotsMethod::Include)
            .await
            .map(|_| ())
            .map_err(|e| self.map_error(e))
    }
}

/// Status + `x-ms-error-code` → [`StoreError`]; `message` is only built for the catch-all.
fn classify_http(status: u16, code: String, message: impl FnOnce() -> String) -> StoreError {
    match (status, code.as_str()) {
        (404, _) => StoreError::NotFound {
            code: if code.is_empty() {
                "NotFound".to_owned()
            } else {
                code
            },
        },
        (401 | 403, _) => StoreError::AuthFailed { status, code },
        (412, _) => StoreError::PreconditionFailed { status, code },
        (409, "BlobAlreadyExists" | "ContainerAlreadyExists") => StoreError::AlreadyExists { code },
        (429 | 503, _) => StoreError::Throttled { status, code },
        _ => StoreError::Service {
            status,
            code,
            message: message(),
        },
    }
}

/// Restates a write failure in terms of the write's precondition: `If-None-Match: *` failing
/// comes back as 409 BlobAlreadyExists or as 412 depending on the operation, and `If-Match`
/// on a blob deleted meanwhile as 404 BlobNotFound; both mean "the blob changed remotely".
fn write_error(err: StoreError, condition: &WriteCondition) -> StoreError {
    match (condition, err) {
        (WriteCondition::DoesNotExist, StoreError::PreconditionFailed { code, .. }) => {
            StoreError::AlreadyExists { code }
        }
        (WriteCondition::Matches(_), StoreError::NotFound { code }) if code == "BlobNotFound" => {
            StoreError::PreconditionFailed { status: 404, code }
        }
        (_, err) => err,
    }
}

fn if_match_condition(condition: &WriteCondition) -> Option<IfMatchCondition> {
    match condition {
        WriteCondition::None => None,
        WriteCondition::DoesNotExist => Some(IfMatchCondition::NotMatch("*".to_owned())),
        WriteCondition::Matches(etag) => Some(IfMatchCondition::Match(etag.clone())),
    }
}

fn write_result(etag: &str, last_modified: OffsetDateTime) -> WriteResult {
    WriteResult {
        etag: normalize_etag(etag),
        last_modified: SystemTime::from(last_modified),
    }
}

/// Azure returns ETags quoted in headers (`"0x8D..."`) but bare in listing XML; callers compare
/// ETags from both sources, so they are always given in the quoted (HTTP) form.
fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    if etag.starts_with('"') || etag.starts_with("W/") || etag.is_empty() {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// `hdi_isfolder=true`, key and value compared case-insensitively as blobfuse2 and rclone do.
fn is_dir_marker_metadata(metadata: &std::collections::HashMap<String, String>) -> bool {
    metadata.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case(DIR_MARKER_METADATA_KEY) && v.trim().eq_ignore_ascii_case("true")
    })
}

/// The whole token plus its signature (raw and as it appears percent-encoded in URLs).
fn sas_secrets(token: &str) -> Vec<String> {
    let mut secrets = vec![token.to_owned()];
    for pair in token.split('&') {
        if let Some(sig) = pair.strip_prefix("sig=") {
            secrets.push(sig.to_owned());
        }
    }
    for (k, v) in url::form_urlencoded::parse(token.as_bytes()) {
        if k == "sig" {
            secrets.push(v.into_owned());
        }
    }
    secrets.retain(|s| s.len() >= 8);
    secrets
}

/// The messages of an error and its sources, minus the SDK's generic wrappers, joined by `: `.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    const NOISE: &[&str] = &[
        "retry policy expired and the request will no longer be retried",
        "non-io error occurred which will not be retried",
        "failed to execute `reqwest` request",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        let text = text.trim();
        if !text.is_empty() && !NOISE.contains(&text) && !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_owned());
        }
        current = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// Removes secrets from a text meant for a log or a user: the known secrets, the query string
/// of any URL (a SAS lives there) and any remaining `sig=` value.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = strip_url_queries(text);
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    redact_sig_values(&out)
}

fn is_url_end(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}'
        )
}

fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url_start(rest) {
        out.push_str(&rest[..start]);
        let url_and_after = &rest[start..];
        let end = url_and_after
            .find(is_url_end)
            .unwrap_or(url_and_after.len());
        let url = &url_and_after[..end];
        match url.find(['?', '#']) {
            Some(q) if q + 1 < url.len() => {
                out.push_str(&url[..q]);
                out.push('?');
                out.push_str(REDACTED);
            }
            _ => out.push_str(url),
        }
        rest = &url_and_after[end..];
    }
    out.push_str(rest);
    out
}

fn find_url_start(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    match (lower.find("http://"), lower.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn redact_sig_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(pos) = lower.find("sig=") else {
            break;
        };
        let value_start = pos + "sig=".len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let end = value
            .find(|c: char| c == '&' || is_url_end(c))
            .unwrap_or(value.len());
        if end > 0 && !value[..end].starts_with(REDACTED) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "sig=AbC%2Fdef%2Bghi%3D";
    const TOKEN: &str =
        "sv=2022-11-02&sp=racwdl&sr=c&se=2030-01-01T00%3A00%3A00Z&sig=AbC%2Fdef%2Bghi%3D";

    #[test]
    fn scrub_removes_url_queries_and_signatures() {
        let text = format!(
            "error sending request for url (http://127.0.0.1:1/devstoreaccount1/c/a%20b?restype=container&{TOKEN}): connection refused"
        );
        let s = scrub(&text, &sas_secrets(TOKEN));
        assert_eq!(
            s,
            "error sending request for url (http://127.0.0.1:1/devstoreaccount1/c/a%20b?<redacted>): connection refused"
        );
        let s = scrub(&text, &[]);
        assert!(!s.contains("AbC"), "{s}");
        assert!(!s.contains("sp=racwdl"), "{s}");
        assert!(
            s.contains("http://127.0.0.1:1/devstoreaccount1/c/a%20b?<redacted>"),
            "{s}"
        );
        assert!(s.ends_with("): connection refused"), "{s}");
    }

    #[test]
    fn scrub_removes_bare_signatures_and_known_secrets() {
        let s = scrub(&format!("oops {SIG}&x=1 and {SIG}"), &[]);
        assert_eq!(s, "oops sig=<redacted>&x=1 and sig=<redacted>");

        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let s = scrub(&format!("key {key} leaked"), &[key.to_owned()]);
        assert_eq!(s, "key <redacted> leaked");

        let secrets = sas_secrets(TOKEN);
        assert!(secrets.iter().any(|s| s == "AbC/def+ghi="));
        let s = scrub("decoded signature AbC/def+ghi= in text", &secrets);
        assert!(!s.contains("AbC"), "{s}");
    }

    #[test]
    fn scrub_keeps_harmless_text() {
        let text = "service error (500 InternalError): https://acct.blob.core.windows.net/c";
        assert_eq!(scrub(text, &[]), text);
        assert_eq!(scrub("no url here", &[]), "no url here");
        assert_eq!(scrub("", &[]), "");
    }

    #[test]
    fn etags_are_quoted() {
        assert_eq!(normalize_etag("0x8D1"), "\"0x8D1\"");
        assert_eq!(normalize_etag("\"0x8D1\""), "\"0x8D1\"");
        assert_eq!(normalize_etag("W/\"x\""), "W/\"x\"");
    }

    #[test]
    fn dir_marker_metadata_is_case_insensitive() {
        let mut m = std::collections::HashMap::new();
        m.insert("Hdi_IsFolder".to_owned(), "TRUE".to_owned());
        assert!(is_dir_marker_metadata(&m));
        m.insert("Hdi_IsFolder".to_owned(), "false".to_owned());
        assert!(!is_dir_marker_metadata(&m));
    }

    #[test]
    fn http_statuses_are_classified() {
        let msg = || "m".to_owned();
        assert!(matches!(
            classify_http(404, "BlobNotFound".into(), msg),
            StoreError::NotFound { .. }
        ));
        assert!(matches!(
            classify_http(404, String::new(), msg),
            StoreError::NotFound { code } if code == "NotFound"
        ));
        assert!(matches!(
            classify_http(403, "AuthorizationFailure".into(), msg),
            StoreError::AuthFailed { status: 403, .. }
        ));
        assert!(matches!(
            classify_http(409, "BlobAlreadyExists".into(), msg),
            StoreError::AlreadyExists { .. }
        ));
        assert!(matches!(
            classify_http(409, "LeaseIdMissing".into(), msg),
            StoreError::Service { status: 409, .. }
        ));
        assert!(matches!(
            classify_http(503, "ServerBusy".into(), msg),
            StoreError::Throttled { status: 503, .. }
        ));
        assert!(matches!(
            write_error(
                classify_http(412, "ConditionNotMet".into(), msg),
                &WriteCondition::DoesNotExist
            ),
            StoreError::AlreadyExists { .. }
        ));
        assert!(matches!(
            write_error(
                classify_http(404, "BlobNotFound".into(), msg),
                &WriteCondition::Matches("\"x\"".into())
            ),
            StoreError::PreconditionFailed { .. }
        ));
    }
}
