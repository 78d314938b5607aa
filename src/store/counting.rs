//! A [`BlobStore`] wrapper that counts requests by kind, so tests can assert how many requests
//! an operation cost and the daemon can report them (at exit, and on SIGUSR1).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobInfo, BlobStore, ByteStream, ListPage, StoreResult, WriteCondition, WriteResult};

/// Request counters, one per kind of request the store makes.
#[derive(Default, Debug)]
pub struct RequestCounts {
    pub list: AtomicU64,
    pub properties: AtomicU64,
    pub get: AtomicU64,
    pub get_bytes: AtomicU64,
    pub put: AtomicU64,
    pub put_bytes: AtomicU64,
    pub copy: AtomicU64,
    pub delete: AtomicU64,
}

/// A point-in-time copy of [`RequestCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestSnapshot {
    pub list: u64,
    pub properties: u64,
    pub get: u64,
    pub get_bytes: u64,
    pub put: u64,
    pub put_bytes: u64,
    pub copy: u64,
    pub delete: u64,
}

impl RequestCounts {
    pub fn snapshot(&self) -> RequestSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestSnapshot {
            list: load(&self.list),
            properties: load(&self.properties),
            get: load(&self.get),
            get_bytes: load(&self.get_bytes),
            put: load(&self.put),
            put_bytes: load(&self.put_bytes),
            copy: load(&self.copy),
            delete: load(&self.delete),
        }
    }
}

impl fmt::Display for RequestSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "list={} properties={} get={} get_bytes={} put={} put_bytes={} copy={} delete={}",
            self.list,
            self.properties,
            self.get,
            self.get_bytes,
            self.put,
            self.put_bytes,
            self.copy,
            self.delete
        )
    }
}

pub struct CountingStore<S> {
    inner: S,
    counts: Arc<RequestCounts>,
}

impl<S: BlobStore> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            counts: Arc::default(),
        }
    }

    pub fn counts(&self) -> Arc<RequestCounts> {
        Arc::clone(&self.counts)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[async_trait]
impl<S: BlobStore> BlobStore for CountingStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn check_container(&self) -> StoreResult<()> {
        bump(&self.counts.list, 1);
        self.inner.check_container().await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        bump(&self.counts.list, 1);
        self.inner
            .list(prefix, delimiter, marker, max_results)
            .await
    }

    async fn properties(&self, name: &str) -> StoreResult<BlobInfo> {
        bump(&self.counts.properties, 1);
        self.inner.properties(name).await
    }

    async fn get_range_stream(
        &self,
        name: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream> {
        use futures::StreamExt;
        bump(&self.counts.get, 1);
        let stream = self.inner.get_range_stream(name, range, if_match).await?;
        let counts = Arc::clone(&self.counts);
        Ok(Box::pin(stream.inspect(move |piece| {
            if let Ok(bytes) = piece {
                bump(&counts.get_bytes, bytes.len() as u64);
            }
        })))
    }

    async fn put(
        &self,
        name: &str,
        body: Bytes,
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        bump(&self.counts.put, 1);
        bump(&self.counts.put_bytes, body.len() as u64);
        self.inner.put(name, body, condition).await
    }

    async fn put_block(&self, name: &str, block_id: &str, body: Bytes) -> StoreResult<()> {
        bump(&self.counts.put, 1);
        bump(&self.counts.put_bytes, body.len() as u64);
        self.inner.put_block(name, block_id, body).await
    }

    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        bump(&self.counts.put, 1);
        self.inner.put_block_list(name, block_ids, condition).await
    }

    async fn put_dir_marker(&self, name: &str) -> StoreResult<WriteResult> {
        bump(&self.counts.put, 1);
        self.inner.put_dir_marker(name).await
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<WriteResult> {
        bump(&self.counts.copy, 1);
        self.inner.copy(from, to).await
    }

    async fn delete(&self, name: &str) -> StoreResult<()> {
        bump(&self.counts.delete, 1);
        self.inner.delete(name).await
    }
}
