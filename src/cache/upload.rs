//! Writing a cached file back as a blob.
//!
//! Small files go up in one Put Blob. Larger ones go up as blocks (Put Block, several in
//! parallel, then one Put Block List) so memory stays bounded (a few blocks in flight) and a
//! transient failure costs one block, not the whole file. Either way the final request carries
//! the write condition, so an upload never replaces a blob that changed remotely since we read
//! it, and a new file never replaces one somebody else created meanwhile.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::cache::content::CachedBlob;
use crate::store::{BlobStore, StoreError, StoreResult, WriteCondition, WriteResult};

/// Files up to this size are uploaded with one request.
pub const SINGLE_PUT_MAX: u64 = 32 << 20;
/// Block size for block uploads (Azure allows up to 4000 MiB a block, 50,000 blocks a blob).
pub const BLOCK_SIZE: u64 = 8 << 20;
/// Blocks uploaded at once.
pub const PARALLEL_BLOCKS: usize = 4;

/// Uploads the first `size` bytes of `blob`'s local file as blob `name`.
pub async fn upload(
    store: &Arc<dyn BlobStore>,
    name: &str,
    blob: &Arc<CachedBlob>,
    size: u64,
    condition: &WriteCondition,
) -> StoreResult<WriteResult> {
    if size <= SINGLE_PUT_MAX {
        let body = read_part(blob, 0, size as usize).await?;
        return store.put(name, body, condition).await;
    }
    // Block ids must be unique among the blob's uncommitted blocks and of equal length: a
    // per-upload random tag keeps two uploads of one blob (two mounts) from mixing blocks.
    let tag: u64 = rand_tag();
    let block_count = size.div_ceil(BLOCK_SIZE);
    let ids: Vec<String> = (0..block_count)
        .map(|i| format!("{tag:016x}-{i:08}"))
        .collect();
    // Each block future owns what it uses: borrowed captures here trip the compiler's
    // higher-ranked `Send` check when the whole upload runs inside a spawned task.
    let blocks = ids.iter().cloned().enumerate().map(|(i, id)| {
        let (store, blob, name) = (Arc::clone(store), Arc::clone(blob), name.to_string());
        async move {
            let start = i as u64 * BLOCK_SIZE;
            let len = BLOCK_SIZE.min(size - start) as usize;
            let body = read_part(&blob, start, len).await?;
            store.put_block(&name, &id, body).await
        }
    });
    futures::stream::iter(blocks)
        .buffer_unordered(PARALLEL_BLOCKS)
        .try_collect::<Vec<()>>()
        .await?;
    store.put_block_list(name, &ids, condition).await
}

async fn read_part(blob: &Arc<CachedBlob>, offset: u64, len: usize) -> StoreResult<Bytes> {
    let blob = Arc::clone(blob);
    let data = tokio::task::spawn_blocking(move || blob.read_at(offset, len))
        .await
        .map_err(|e| StoreError::Other(format!("reading the cached copy: {e}")))?
        .map_err(|e| StoreError::Other(format!("reading the cached copy: {e}")))?;
    if data.len() != len {
        return Err(StoreError::Other(format!(
            "the cached copy is shorter than expected ({} of {len} bytes at {offset})",
            data.len()
        )));
    }
    Ok(Bytes::from(data))
}

fn rand_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per process and per instance: enough to keep concurrent
    // uploads apart without a dependency on a random-number crate.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
