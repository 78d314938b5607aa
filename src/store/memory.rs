//! An in-process [`BlobStore`] for fast unit tests of the core: same listing, condition and
//! error semantics as the service, no network.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BlobInfo, BlobStore, ByteStream, ListPage, StoreError, StoreResult, WriteCondition, WriteResult,
};

#[derive(Clone)]
struct MemoryBlob {
    data: Bytes,
    etag: String,
    last_modified: SystemTime,
    is_dir_marker: bool,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, MemoryBlob>,
    staged_blocks: HashMap<(String, String), Bytes>,
    next_etag: u64,
}

/// Blobs in a `BTreeMap`, so listings come out in name order like the service's.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a test thread panicked; the map itself is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test helper: the whole content of a blob, if it exists.
    pub fn content(&self, name: &str) -> Option<Bytes> {
        self.lock().blobs.get(name).map(|b| b.data.clone())
    }

    fn write(
        &self,
        name: &str,
        data: Bytes,
        is_dir_marker: bool,
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        let mut state = self.lock();
        let existing = state.blobs.get(name);
        match (condition, existing) {
            (WriteCondition::DoesNotExist, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    code: "BlobAlreadyExists".into(),
                })
            }
            (WriteCondition::Matches(etag), Some(blob)) if &blob.etag != etag => {
                return Err(precondition_failed())
            }
            (WriteCondition::Matches(_), None) => return Err(precondition_failed()),
            _ => {}
        }
        state.next_etag += 1;
        let blob = MemoryBlob {
            data,
            etag: format!("\"0x{:X}\"", state.next_etag),
            last_modified: SystemTime::now(),
            is_dir_marker,
        };
        let result = WriteResult {
            etag: blob.etag.clone(),
            last_modified: blob.last_modified,
        };
        state.blobs.insert(name.to_string(), blob);
        Ok(result)
    }
}

fn precondition_failed() -> StoreError {
    StoreError::PreconditionFailed {
        status: 412,
        code: "ConditionNotMet".into(),
    }
}

fn blob_not_found() -> StoreError {
    StoreError::NotFound {
        code: "BlobNotFound".into(),
    }
}

fn info(name: &str, blob: &MemoryBlob) -> BlobInfo {
    BlobInfo {
        name: name.to_string(),
        size: blob.data.len() as u64,
        last_modified: blob.last_modified,
        etag: blob.etag.clone(),
        is_dir_marker: blob.is_dir_marker,
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    fn describe(&self) -> String {
        "memory://".to_string()
    }

    async fn check_container(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max_results: u32,
    ) -> StoreResult<ListPage> {
        let state = self.lock();
        let mut page = ListPage::default();
        let mut count = 0u32;
        let start = marker.unwrap_or_else(|| prefix.to_string());
        for (name, blob) in state.blobs.range(start..) {
            if !name.starts_with(prefix) {
                break;
            }
            let rest = &name[prefix.len()..];
            let folded = delimiter.and_then(|d| {
                rest.find(d)
                    .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
            });
            if let Some(common) = &folded {
                if page.prefixes.last() == Some(common) {
                    continue;
                }
            }
            if count == max_results {
                page.next_marker = Some(name.clone());
                break;
            }
            count += 1;
            match folded {
                Some(common) => page.prefixes.push(common),
                None => page.blobs.push(info(name, blob)),
            }
        }
        Ok(page)
    }

    async fn properties(&self, name: &str) -> StoreResult<BlobInfo> {
        let state = self.lock();
        state
            .blobs
            .get(name)
            .map(|b| info(name, b))
            .ok_or_else(blob_not_found)
    }

    async fn get_range_stream(
        &self,
        name: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream> {
        let state = self.lock();
        let blob = state.blobs.get(name).ok_or_else(blob_not_found)?;
        if if_match.is_some_and(|etag| etag != blob.etag) {
            return Err(precondition_failed());
        }
        let len = blob.data.len() as u64;
        let end = range.end.min(len);
        if range.start >= end {
            return Err(StoreError::Service {
                status: 416,
                code: "InvalidRange".into(),
                message: "range not satisfiable".into(),
            });
        }
        let data = blob.data.slice(range.start as usize..end as usize);
        // In pieces, like a network body, so consumers' reassembly is exercised.
        let pieces: Vec<StoreResult<Bytes>> = (0..data.len())
            .step_by(256 << 10)
            .map(|at| Ok(data.slice(at..(at + (256 << 10)).min(data.len()))))
            .collect();
        Ok(Box::pin(futures::stream::iter(pieces)))
    }

    async fn put(
        &self,
        name: &str,
        body: Bytes,
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        self.write(name, body, false, condition)
    }

    async fn put_block(&self, name: &str, block_id: &str, body: Bytes) -> StoreResult<()> {
        self.lock()
            .staged_blocks
            .insert((name.to_string(), block_id.to_string()), body);
        Ok(())
    }

    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        condition: &WriteCondition,
    ) -> StoreResult<WriteResult> {
        let mut data = Vec::new();
        {
            let state = self.lock();
            for id in block_ids {
                let block = state
                    .staged_blocks
                    .get(&(name.to_string(), id.clone()))
                    .ok_or_else(|| StoreError::Service {
                        status: 400,
                        code: "InvalidBlockList".into(),
                        message: format!("block {id} was not staged"),
                    })?;
                data.extend_from_slice(block);
            }
        }
        let result = self.write(name, Bytes::from(data), false, condition)?;
        self.lock()
            .staged_blocks
            .retain(|(blob, _), _| blob != name);
        Ok(result)
    }

    async fn put_dir_marker(&self, name: &str) -> StoreResult<WriteResult> {
        self.write(name, Bytes::new(), true, &WriteCondition::None)
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<WriteResult> {
        let source = self
            .lock()
            .blobs
            .get(from)
            .cloned()
            .ok_or_else(blob_not_found)?;
        self.write(to, source.data, source.is_dir_marker, &WriteCondition::None)
    }

    async fn delete(&self, name: &str) -> StoreResult<()> {
        self.lock()
            .blobs
            .remove(name)
            .map(|_| ())
            .ok_or_else(blob_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delimited_listing_pages_fold_prefixes_once() {
        let store = MemoryStore::new();
        for name in ["a/1", "a/2", "b", "c/x/y", "d"] {
            store
                .put(name, Bytes::from_static(b"x"), &WriteCondition::None)
                .await
                .unwrap();
        }
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let page = store.list("", Some("/"), marker, 2).await.unwrap();
            names.extend(page.prefixes);
            names.extend(page.blobs.into_iter().map(|b| b.name));
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
        names.sort();
        assert_eq!(names, ["a/", "b", "c/", "d"]);
    }

    #[tokio::test]
    async fn conditions_are_enforced() {
        let store = MemoryStore::new();
        let first = store
            .put("f", Bytes::from_static(b"1"), &WriteCondition::DoesNotExist)
            .await
            .unwrap();
        let again = store
            .put("f", Bytes::from_static(b"2"), &WriteCondition::DoesNotExist)
            .await;
        assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
        let stale = store
            .put(
                "f",
                Bytes::from_static(b"2"),
                &WriteCondition::Matches("\"old\"".into()),
            )
            .await;
        assert!(matches!(stale, Err(StoreError::PreconditionFailed { .. })));
        store
            .put(
                "f",
                Bytes::from_static(b"2"),
                &WriteCondition::Matches(first.etag),
            )
            .await
            .unwrap();
        assert_eq!(store.content("f").unwrap(), Bytes::from_static(b"2"));
    }
}
