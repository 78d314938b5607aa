//! Blob content on the local disk, fetched lazily in chunks.
//!
//! Each cached blob version is one sparse file in the cache directory plus an in-memory map of
//! which 1 MiB chunks are present. A read waits only for the chunks it touches; missing chunks
//! are fetched by ranged GETs (consecutive missing chunks are merged into requests of up to
//! [`MAX_REQUEST_CHUNKS`]) that run in parallel, bounded by a global limit, and are validated
//! with If-Match on the version's ETag so a blob replaced mid-read fails cleanly (ESTALE) instead
//! of mixing versions. Many readers of one blob share one [`CachedBlob`] and so one download.
//!
//! Clean, closed blobs stay in the cache for reuse (the same ETag opened again costs nothing)
//! and are evicted least-recently-used first when the cache exceeds its byte budget. Open and
//! dirty blobs are never evicted: only idle ones are in the LRU list.
//!
//! Cached content outlives the mount, and dirty content outlives a crash: see [`persist`] for
//! the files beside each data file and what a new mount does with them.
//!
//! [`persist`]: crate::cache::persist

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use lru::LruCache;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::cache::file_io;
use crate::cache::persist::{self, Sidecar};
use crate::error::{FsError, FsResult};
use crate::store::BlobStore;

/// Granularity of the presence map. Small enough that a random 4 KiB read fetches little.
pub const CHUNK_SIZE: u64 = 1 << 20;
/// The largest single ranged GET, in chunks. Each request costs the service (and a client's
/// CPU) a fixed overhead, so a long sequential download uses a few big requests rather than
/// many small ones (measured on Azurite: a few percent faster at best, see docs/DESIGN.md).
pub const MAX_REQUEST_CHUNKS: usize = 32;
/// GETs in flight across all blobs.
pub const MAX_PARALLEL_FETCHES: usize = 8;
/// A ranged GET slower than this is worth a warning: reads are waiting on it.
const SLOW_FETCH: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone, Debug)]
enum ChunkState {
    Missing,
    /// Being downloaded by the fetch with this number. Only that fetch may settle the chunk:
    /// a chunk trimmed after an earlier fetch brought it, and being fetched again, must not be
    /// marked present when the earlier fetch ends.
    Fetching(u64),
    Present,
    Failed(FsError),
}

/// Which remote version a cached blob's missing chunks come from.
#[derive(Clone, Debug)]
pub struct RemoteVersion {
    pub name: String,
    pub etag: String,
    pub size: u64,
}

/// One blob's content on disk.
pub struct CachedBlob {
    id: u64,
    /// Shared with the blocking threads that write downloaded bytes, without a `dup` per write.
    file: Arc<File>,
    path: PathBuf,
    /// `None` once every chunk is local (new files, or after local writes began).
    source: Mutex<Option<RemoteVersion>>,
    chunks: Mutex<Vec<ChunkState>>,
    changed: Notify,
    /// Set when the mount ends: the file stays for the next mount instead of being removed.
    keep_on_disk: AtomicBool,
    /// Bytes the latest read needed or prefetched: not trimmed to make room.
    hot: Mutex<Range<u64>>,
    /// Byte ranges that readers and writers are using right now (see [`CachedBlob::pin`]):
    /// never trimmed, so a range made present stays present until it has been used.
    pins: Mutex<Vec<(u64, Range<u64>)>>,
    next_pin: AtomicU64,
    next_fetch: AtomicU64,
    /// Handed to the kernel as a complete file (passthrough): must never get holes again.
    handed_out: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent at every await-free step, so a panic in
    // another thread does not make it unusable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn chunk_count(size: u64) -> usize {
    size.div_ceil(CHUNK_SIZE) as usize
}

impl CachedBlob {
    fn new(
        id: u64,
        file: File,
        path: PathBuf,
        source: Option<RemoteVersion>,
        chunks: Vec<ChunkState>,
    ) -> Arc<Self> {
        Arc::new(CachedBlob {
            id,
            file: Arc::new(file),
            path,
            source: Mutex::new(source),
            chunks: Mutex::new(chunks),
            changed: Notify::new(),
            keep_on_disk: AtomicBool::new(false),
            hot: Mutex::new(0..0),
            pins: Mutex::new(Vec::new()),
            next_pin: AtomicU64::new(0),
            next_fetch: AtomicU64::new(0),
            handed_out: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The remote version this content still lazily fetches from, if any.
    pub fn source(&self) -> Option<RemoteVersion> {
        lock(&self.source).clone()
    }

    /// True when every byte is on the local disk.
    pub fn is_complete(&self) -> bool {
        lock(&self.chunks)
            .iter()
            .all(|c| matches!(c, ChunkState::Present))
    }

    /// Makes sure bytes `needed` are on disk, and starts (without waiting) fetches of the
    /// bytes up to `prefetch_end` too.
    pub async fn ensure(
        self: &Arc<Self>,
        cache: &Arc<ContentCache>,
        needed: Range<u64>,
        prefetch_end: u64,
    ) -> FsResult<()> {
        if needed.is_empty() && prefetch_end <= needed.start {
            return Ok(());
        }
        // Requests grow with the read-ahead window, so that a reader that only looks at the
        // head of a file (an open's prefetch, `head`, a file-type probe) costs a small request,
        // and a long sequential read ends up with few big ones.
        let window = prefetch_end.saturating_sub(needed.end.max(needed.start));
        let request_chunks = ((window / CHUNK_SIZE) as usize)
            .max(chunk_range(&needed, usize::MAX).len())
            .clamp(1, MAX_REQUEST_CHUNKS);
        if !needed.is_empty() {
            // Only real reads move the hot range: a background prefetch must not make the
            // range a reader waits for look cold.
            *lock(&self.hot) = needed.start..prefetch_end.max(needed.end);
        }
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a fetch finishing in between still wakes us.
            notified.as_mut().enable();
            let (pending, to_fetch) = {
                let mut chunks = lock(&self.chunks);
                let needed_chunks = chunk_range(&needed, chunks.len());
                let mut pending = false;
                let mut to_fetch = Vec::new();
                for index in needed_chunks.clone() {
                    match &chunks[index] {
                        ChunkState::Present => {}
                        ChunkState::Fetching(_) => pending = true,
                        ChunkState::Missing => {
                            to_fetch.push(index);
                            pending = true;
                        }
                        ChunkState::Failed(err) => {
                            let err = err.clone();
                            // A later read retries instead of failing forever.
                            chunks[index] = ChunkState::Missing;
                            return Err(err);
                        }
                    }
                }
                let prefetch = chunk_range(
                    &(needed_chunks.end as u64 * CHUNK_SIZE..prefetch_end),
                    chunks.len(),
                );
                // Whole aligned blocks of the request size: a window that creeps forward a
                // little per read must still fetch in big requests, not one chunk at a time.
                // No window (a random read) stays no window.
                let prefetch = if prefetch.is_empty() {
                    prefetch
                } else {
                    prefetch.start
                        ..prefetch
                            .end
                            .next_multiple_of(request_chunks)
                            .min(chunks.len())
                };
                for index in prefetch {
                    if matches!(chunks[index], ChunkState::Missing) {
                        to_fetch.push(index);
                    }
                }
                let runs: Vec<(u64, Range<usize>)> = request_runs(&to_fetch, request_chunks)
                    .into_iter()
                    .map(|run| {
                        let id = self.next_fetch.fetch_add(1, Ordering::Relaxed);
                        for state in &mut chunks[run.clone()] {
                            *state = ChunkState::Fetching(id);
                        }
                        (id, run)
                    })
                    .collect();
                (pending, runs)
            };
            for (id, run) in to_fetch {
                tokio::spawn(Arc::clone(self).fetch(Arc::clone(cache), id, run));
            }
            if !pending {
                return Ok(());
            }
            notified.await;
        }
    }

    async fn fetch(self: Arc<Self>, cache: Arc<ContentCache>, id: u64, chunks: Range<usize>) {
        let result = self.fetch_inner(&cache, id, chunks.clone()).await;
        self.settle(id, chunks, &result);
        if let Ok(fetched) = result {
            cache.account(fetched);
        }
    }

    /// Fetches `chunks` into the file; returns the bytes written.
    async fn fetch_inner(
        &self,
        cache: &Arc<ContentCache>,
        id: u64,
        chunks: Range<usize>,
    ) -> FsResult<u64> {
        let Some(source) = self.source() else {
            return Ok(0);
        };
        let range =
            chunks.start as u64 * CHUNK_SIZE..(chunks.end as u64 * CHUNK_SIZE).min(source.size);
        if range.is_empty() {
            return Ok(0);
        }
        let _slot = cache.slots.acquire().await.map_err(|_| {
            FsError::failure(libc::EIO, "the download queue is closed (shutting down)")
        })?;
        let started = std::time::Instant::now();
        let reading = |e| FsError::from_store("reading", &source.name, e);
        let mut body = cache
            .store
            .get_range_stream(&source.name, range.clone(), Some(&source.etag))
            .await
            .map_err(reading)?;
        // Written as it arrives, a chunk at a time: memory per request stays at about one
        // chunk however large the request, and readers waiting for the first chunks of a big
        // request are woken as soon as those are on disk.
        let mut written = range.start;
        let mut pieces: Vec<bytes::Bytes> = Vec::new();
        let mut pending = 0u64;
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(reading)?;
            pending += piece.len() as u64;
            pieces.push(piece);
            if written + pending > range.end {
                // Never let a misbehaving answer spill into the neighbouring chunks.
                return Err(FsError::failure(
                    libc::EIO,
                    format!(
                        "reading '{}': the service sent more than the range asked for",
                        source.name
                    ),
                ));
            }
            if pending >= CHUNK_SIZE {
                self.write_pieces(cache, std::mem::take(&mut pieces), written, &source.name)
                    .await?;
                self.mark_present(id, range.start..written + pending);
                written += pending;
                pending = 0;
            }
        }
        if !pieces.is_empty() {
            self.write_pieces(cache, pieces, written, &source.name)
                .await?;
            written += pending;
        }
        let elapsed = started.elapsed();
        if elapsed > SLOW_FETCH {
            warn!(blob = %source.name, start = range.start, end = range.end, ?elapsed, "slow ranged GET");
        } else {
            debug!(blob = %source.name, start = range.start, end = range.end, ?elapsed, "fetched");
        }
        if written != range.end {
            return Err(FsError::failure(
                libc::EIO,
                format!(
                    "reading '{}': asked for {} bytes at {}, got {}",
                    source.name,
                    range.end - range.start,
                    range.start,
                    written - range.start
                ),
            ));
        }
        Ok(range.end - range.start)
    }

    /// Fetch `id` of `chunks` ended with `result`: the chunks it still owns become present or
    /// failed, and waiting readers look again.
    fn settle(&self, id: u64, chunks: Range<usize>, result: &FsResult<u64>) {
        {
            let mut states = lock(&self.chunks);
            for index in chunks {
                if let Some(state) = states.get_mut(index) {
                    // Local writes may have made the chunk present meanwhile (keep theirs),
                    // or it was trimmed and another fetch owns it now.
                    if matches!(state, ChunkState::Fetching(owner) if *owner == id) {
                        *state = match result {
                            Ok(_) => ChunkState::Present,
                            Err(err) => ChunkState::Failed(err.clone()),
                        };
                    }
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Chunks fully inside `range` arrived (by fetch `id`): readers waiting for them may go on.
    fn mark_present(&self, id: u64, range: Range<u64>) {
        {
            let mut chunks = lock(&self.chunks);
            let first = range.start.div_ceil(CHUNK_SIZE) as usize;
            let last = (range.end / CHUNK_SIZE) as usize;
            for state in chunks.iter_mut().take(last).skip(first) {
                if matches!(state, ChunkState::Fetching(owner) if *owner == id) {
                    *state = ChunkState::Present;
                }
            }
        }
        self.changed.notify_waiters();
    }

    async fn write_pieces(
        &self,
        cache: &Arc<ContentCache>,
        pieces: Vec<bytes::Bytes>,
        offset: u64,
        what: &str,
    ) -> FsResult<()> {
        let file = Arc::clone(&self.file);
        let cache = Arc::clone(cache);
        let name = what.to_string();
        let needed = pieces.iter().map(|p| p.len() as u64).sum();
        tokio::task::spawn_blocking(move || {
            cache.write_with_room(needed, &name, || {
                file_io::write_pieces_at(&file, &pieces, offset)
            })
        })
        .await
        .map_err(|e| FsError::failure(libc::EIO, format!("writing '{what}': {e}")))?
        .map_err(|e| FsError::from_io("writing", what, e))
    }

    /// Reads up to `len` bytes at `offset` from the local file. The caller made sure they
    /// are present and bounded the request by the file's size.
    pub fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        file_io::read_at(&self.file, offset, len)
    }

    /// Writes local changes. The caller fetched everything first (see [`Self::ensure`]).
    pub fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(data, offset)?;
        self.cover(offset + data.len() as u64);
        Ok(())
    }

    /// Sets the local length (truncate or extend with zeros).
    pub fn set_len(&self, size: u64) -> std::io::Result<()> {
        self.file.set_len(size)?;
        let mut chunks = lock(&self.chunks);
        chunks.truncate(chunk_count(size));
        drop(chunks);
        self.cover(size);
        Ok(())
    }

    /// Marks everything up to `end` as present locally (written, or zeros past the old end).
    pub fn cover(&self, end: u64) {
        let mut chunks = lock(&self.chunks);
        let count = chunk_count(end);
        if chunks.len() < count {
            chunks.resize(count, ChunkState::Present);
        }
    }

    /// From now on the content is local: no fetches; called once all chunks are present and
    /// local writes begin, and after an upload (the remote now equals the local copy).
    pub fn detach_from_remote(&self) {
        *lock(&self.source) = None;
    }

    /// Records that the local copy equals remote version `source` (after an upload).
    pub fn attach_to_remote(&self, source: RemoteVersion) {
        *lock(&self.source) = Some(source);
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Length and modification time of the local file: how writes the kernel made to it
    /// directly (passthrough) are noticed.
    pub fn local_len_and_mtime(&self) -> std::io::Result<(u64, std::time::SystemTime)> {
        let meta = self.file.metadata()?;
        Ok((meta.len(), meta.modified()?))
    }

    /// Records on disk that this file holds changes not yet uploaded to `name`, so a crash
    /// does not lose them; its reuse metadata goes, as it no longer describes the content.
    pub fn mark_dirty(&self, name: &str) -> std::io::Result<()> {
        std::fs::write(persist::dirty_path(&self.path), name.as_bytes())?;
        remove_if_present(&persist::meta_path(&self.path))
    }

    pub fn mark_clean(&self) -> std::io::Result<()> {
        remove_if_present(&persist::dirty_path(&self.path))
    }

    fn is_marked_dirty(&self) -> bool {
        persist::dirty_path(&self.path).exists()
    }

    /// Writes the reuse metadata (remote version and present chunks) beside the data, for a
    /// later mount. Content that is local-only (dirty, or never uploaded) gets none.
    fn save_sidecar(&self) -> std::io::Result<()> {
        let Some(source) = self.source() else {
            return Ok(());
        };
        if self.is_marked_dirty() {
            return Ok(());
        }
        let mut present: Vec<(usize, usize)> = Vec::new();
        for (index, state) in lock(&self.chunks).iter().enumerate() {
            if matches!(state, ChunkState::Present) {
                match present.last_mut() {
                    Some(run) if run.1 == index => run.1 += 1,
                    _ => present.push((index, index + 1)),
                }
            }
        }
        persist::save(
            &self.path,
            &Sidecar::new(source.name, source.etag, source.size, present),
        )
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Keeps bytes `range` from being trimmed until the guard is dropped: taken by a reader
    /// before it makes the range present and held until it has read it, so the data cannot
    /// be punched out in between.
    pub fn pin(self: &Arc<Self>, range: Range<u64>) -> PinGuard {
        let id = self.next_pin.fetch_add(1, Ordering::Relaxed);
        lock(&self.pins).push((id, range));
        PinGuard {
            blob: Arc::clone(self),
            id,
        }
    }

    /// The complete file, for the kernel to read directly (passthrough); from now on it is
    /// never trimmed, as the kernel would read holes as zeros.
    pub fn hand_out(&self) -> Option<File> {
        if !self.is_complete() {
            return None;
        }
        let file = self.file.try_clone().ok()?;
        self.handed_out.store(true, Ordering::Relaxed);
        Some(file)
    }

    /// Frees the present chunks outside the hot range (they can be fetched again) and returns
    /// the bytes freed. Only clean content that still has its remote source can be trimmed.
    fn trim_cold(&self) -> u64 {
        if self.handed_out.load(Ordering::Relaxed)
            || self.is_marked_dirty()
            || self.source().is_none()
        {
            return 0;
        }
        let pinned: Vec<Range<usize>> = lock(&self.pins)
            .iter()
            .map(|(_, range)| chunk_range(range, usize::MAX))
            .collect();
        let hot = lock(&self.hot).clone();
        let hot_chunks = chunk_range(
            &(hot.start.saturating_sub(CHUNK_SIZE)..hot.end + CHUNK_SIZE),
            usize::MAX,
        );
        let mut chunks = lock(&self.chunks);
        let mut freed = 0;
        for (index, state) in chunks.iter_mut().enumerate() {
            if hot_chunks.contains(&index)
                || pinned.iter().any(|range| range.contains(&index))
                || !matches!(state, ChunkState::Present)
            {
                continue;
            }
            if file_io::punch_hole(&self.file, index as u64 * CHUNK_SIZE, CHUNK_SIZE).is_ok() {
                *state = ChunkState::Missing;
                freed += CHUNK_SIZE;
            }
        }
        freed
    }
}

/// See [`CachedBlob::pin`].
pub struct PinGuard {
    blob: Arc<CachedBlob>,
    id: u64,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        lock(&self.blob.pins).retain(|(id, _)| *id != self.id);
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Drop for CachedBlob {
    fn drop(&mut self) {
        // Kept: for the next mount (clean), or for recovery (still dirty: the shutdown path
        // saved it to lost+found already, or the next start does).
        if self.keep_on_disk.load(Ordering::Relaxed) || self.is_marked_dirty() {
            return;
        }
        let _ = std::fs::remove_file(persist::meta_path(&self.path));
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The chunk indices covering bytes `range`, clamped to `count` chunks.
fn chunk_range(range: &Range<u64>, count: usize) -> Range<usize> {
    if range.is_empty() {
        return 0..0;
    }
    let first = (range.start / CHUNK_SIZE) as usize;
    let last = ((range.end - 1) / CHUNK_SIZE) as usize + 1;
    first.min(count)..last.min(count)
}

/// Groups sorted chunk indices into runs of consecutive chunks, each at most `max_len` long:
/// one ranged GET per run.
fn request_runs(indices: &[usize], max_len: usize) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for &index in indices {
        match runs.last_mut() {
            Some(run) if run.end == index && run.len() < max_len => run.end += 1,
            _ => runs.push(index..index + 1),
        }
    }
    runs
}

struct Index {
    /// The current cached version of each blob name.
    by_name: HashMap<String, Arc<CachedBlob>>,
    /// Idle (closed, clean) blobs by name, least recently used first out.
    idle: LruCache<String, ()>,
}

/// All cached blobs of one mount.
pub struct ContentCache {
    dir: PathBuf,
    budget: u64,
    /// Bytes added since the last exact count: when the total may exceed the budget, room is
    /// made (see [`ContentCache::account`]).
    added: AtomicU64,
    /// The exact disk usage at the last count.
    counted: AtomicU64,
    next_id: AtomicU64,
    store: Arc<dyn BlobStore>,
    slots: Semaphore,
    index: Mutex<Index>,
}

impl ContentCache {
    /// Uses `dir` (created if needed) for data files, after recovering what a previous run
    /// left there (see the module docs).
    pub fn new(dir: PathBuf, budget: u64, store: Arc<dyn BlobStore>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let recovered = persist::recover(&dir, &dir.join("lost+found"))?;
        let mut index = Index {
            by_name: HashMap::new(),
            idle: LruCache::unbounded(),
        };
        let mut next_id = 1;
        for found in recovered {
            next_id = next_id.max(found.id + 1);
            let name = found.sidecar.name.clone();
            match reopen(found) {
                Ok(blob) => {
                    index.by_name.insert(name.clone(), blob);
                    index.idle.put(name, ());
                }
                Err(err) => warn!(blob = %name, "cannot reuse cached content: {err}"),
            }
        }
        if !index.by_name.is_empty() {
            info!(
                blobs = index.by_name.len(),
                "reusing cached content from a previous mount"
            );
        }
        let cache = ContentCache {
            dir,
            budget,
            added: AtomicU64::new(0),
            counted: AtomicU64::new(0),
            next_id: AtomicU64::new(next_id),
            store,
            slots: Semaphore::new(MAX_PARALLEL_FETCHES),
            index: Mutex::new(index),
        };
        cache.make_room(&mut lock(&cache.index), 0);
        Ok(cache)
    }

    /// The mount ends: keep every clean cached blob, with its metadata, for the next one.
    pub fn persist(&self) {
        for (name, blob) in lock(&self.index).by_name.iter() {
            match blob.save_sidecar() {
                Ok(()) => blob.keep_on_disk.store(true, Ordering::Relaxed),
                Err(err) => {
                    warn!(blob = %name, "cannot keep cached content for the next mount: {err}")
                }
            }
        }
    }

    /// Adds `bytes` to the running estimate and tells whether the cache may be over budget.
    fn may_exceed_budget(&self, bytes: u64) -> bool {
        let added = self.added.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.counted.load(Ordering::Relaxed) + added > self.budget
    }

    /// Records `bytes` newly written to the cache; when the total may exceed the budget,
    /// makes room: idle blobs go first (least recently used), then cold chunks of open ones.
    fn account(&self, bytes: u64) {
        if !self.may_exceed_budget(bytes) {
            return;
        }
        let mut index = lock(&self.index);
        self.make_room(&mut index, 0);
    }

    /// The byte budget of the cache.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn lost_and_found(&self) -> PathBuf {
        self.dir.join("lost+found")
    }

    fn new_blob(
        &self,
        source: Option<RemoteVersion>,
        size: u64,
    ) -> std::io::Result<Arc<CachedBlob>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{id}.data"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(size)?;
        let state = if source.is_some() {
            ChunkState::Missing
        } else {
            ChunkState::Present
        };
        Ok(CachedBlob::new(
            id,
            file,
            path,
            source,
            vec![state; chunk_count(size)],
        ))
    }

    /// The cached content of remote version `version`: the existing one if the same ETag is
    /// cached, else a new, empty (sparse) file that fills on demand.
    pub fn open_remote(&self, version: RemoteVersion) -> std::io::Result<Arc<CachedBlob>> {
        let mut index = lock(&self.index);
        if let Some(existing) = index.by_name.get(&version.name) {
            if existing
                .source()
                .is_some_and(|s| s.etag == version.etag && s.size == version.size)
            {
                let existing = Arc::clone(existing);
                index.idle.pop(&version.name);
                return Ok(existing);
            }
        }
        self.make_room(&mut index, version.size);
        let name = version.name.clone();
        let size = version.size;
        let blob = self.new_blob(Some(version), size)?;
        index.idle.pop(&name);
        index.by_name.insert(name, Arc::clone(&blob));
        Ok(blob)
    }

    /// New local content for `name` (a created or truncated file): replaces any cached version.
    pub fn create_local(&self, name: &str) -> std::io::Result<Arc<CachedBlob>> {
        let blob = self.new_blob(None, 0)?;
        let mut index = lock(&self.index);
        index.idle.pop(name);
        index.by_name.insert(name.to_string(), Arc::clone(&blob));
        Ok(blob)
    }

    /// The file is no longer open: keep it for reuse, evictable.
    pub fn release(&self, name: &str, blob: &Arc<CachedBlob>) {
        let mut index = lock(&self.index);
        if index
            .by_name
            .get(name)
            .is_some_and(|b| Arc::ptr_eq(b, blob))
        {
            // Written now, so a crash later still leaves reusable content behind.
            if let Err(err) = blob.save_sidecar() {
                debug!(blob = %name, "cannot save cache metadata: {err}");
            }
            index.idle.put(name.to_string(), ());
            // A full count stats every cached file: only when the budget may be exceeded.
            // Counting the whole blob again over-estimates (fetched bytes were counted
            // already) but also covers local writes, which are not counted as they happen.
            if self.may_exceed_budget(disk_usage(blob.file())) {
                self.make_room(&mut index, 0);
            }
        }
    }

    /// The blob is gone (deleted, or renamed away): drop its cached content.
    pub fn forget(&self, name: &str) {
        let mut index = lock(&self.index);
        index.by_name.remove(name);
        index.idle.pop(name);
    }

    /// The blob was renamed (copied to `to`, which has ETag `etag`, and deleted).
    pub fn rename(&self, from: &str, to: &str, etag: &str) {
        let mut index = lock(&self.index);
        index.idle.pop(from);
        index.idle.pop(to);
        if let Some(blob) = index.by_name.remove(from) {
            if let Some(mut source) = blob.source() {
                source.name = to.to_string();
                source.etag = etag.to_string();
                blob.attach_to_remote(source);
            }
            index.by_name.insert(to.to_string(), blob);
        } else {
            index.by_name.remove(to);
        }
    }

    /// Evicts idle blobs, least recently used first, until `incoming` more bytes fit the
    /// budget. Blobs in use are not in the idle list and are never evicted.
    fn make_room(&self, index: &mut Index, incoming: u64) {
        let limit = self.budget.saturating_sub(incoming);
        self.shrink(index, |_| limit);
    }

    /// Runs `write` to the cache disk. If the disk is full (whatever the budget says: the disk
    /// may be shared, or smaller than `--cache-size`), evicts idle content and cold chunks to
    /// free at least `needed` bytes and tries once more; if nothing can go, the ENOSPC stands.
    pub fn write_with_room<T>(
        &self,
        needed: u64,
        what: &str,
        write: impl Fn() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match write() {
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => {
                let freed = self.shrink(&mut lock(&self.index), |used| used.saturating_sub(needed));
                warn!(
                    blob = what,
                    freed, "the cache disk is full: evicted cached content"
                );
                if freed == 0 {
                    return Err(err);
                }
                write()
            }
            other => other,
        }
    }

    fn usage(&self, index: &Index) -> u64 {
        index.by_name.values().map(|b| disk_usage(b.file())).sum()
    }

    /// Evicts idle blobs, least recently used first, then trims cold chunks of open ones,
    /// until the cache uses at most `limit(bytes used now)` (or nothing more can go); returns
    /// the bytes freed.
    fn shrink(&self, index: &mut Index, limit: impl FnOnce(u64) -> u64) -> u64 {
        let mut used = self.usage(index);
        let before = used;
        let limit = limit(used);
        while used > limit {
            let Some((name, ())) = index.idle.pop_lru() else {
                break;
            };
            if let Some(blob) = index.by_name.remove(&name) {
                let freed = disk_usage(blob.file());
                debug!(blob = %name, bytes = freed, "evicting cached content");
                used = used.saturating_sub(freed);
            }
        }
        // Still over: a blob larger than the cache is being read; keep only what is hot.
        for (name, blob) in index.by_name.iter() {
            if used <= limit {
                break;
            }
            let freed = blob.trim_cold();
            if freed > 0 {
                debug!(blob = %name, bytes = freed, "trimmed cold chunks of an open blob");
                used = used.saturating_sub(freed);
            }
        }
        self.counted.store(used, Ordering::Relaxed);
        self.added.store(0, Ordering::Relaxed);
        before - used
    }

    /// Bytes the cached files occupy on disk (sparse files count only what is present).
    pub fn disk_usage(&self) -> u64 {
        self.usage(&lock(&self.index))
    }

    /// Keeps the local copy of a blob whose changes could not be uploaded, where the user
    /// can find it, and returns that path.
    pub fn keep_unsaved(&self, name: &str, blob: &CachedBlob) -> std::io::Result<PathBuf> {
        let dir = self.lost_and_found();
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(format!("{}-{}", blob.id(), persist::safe_file_name(name)));
        std::fs::hard_link(blob.path(), &target)?;
        std::fs::write(target.with_extension("blobname"), name)?;
        // The link in lost+found is the copy now; the cache file may go.
        blob.mark_clean()?;
        Ok(target)
    }
}

fn disk_usage(file: &File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    file.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
}

/// Opens a data file found at start-up with the chunk map its sidecar describes.
fn reopen(found: persist::Recovered) -> std::io::Result<Arc<CachedBlob>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&found.data)?;
    let Sidecar {
        name,
        etag,
        size,
        present,
        ..
    } = found.sidecar;
    if file.metadata()?.len() != size {
        return Err(std::io::Error::other(
            "data file size does not match its metadata",
        ));
    }
    let mut chunks = vec![ChunkState::Missing; chunk_count(size)];
    for (start, end) in present {
        for state in chunks.iter_mut().take(end).skip(start) {
            *state = ChunkState::Present;
        }
    }
    Ok(CachedBlob::new(
        found.id,
        file,
        found.data,
        Some(RemoteVersion { name, etag, size }),
        chunks,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_consecutive_chunks_up_to_the_request_size() {
        let indices: Vec<usize> = (0..10).chain([12, 13, 20]).collect();
        assert_eq!(request_runs(&indices, 8), vec![0..8, 8..10, 12..14, 20..21]);
        let indices: Vec<usize> = (6..17).collect();
        assert_eq!(request_runs(&indices, 4), vec![6..10, 10..14, 14..17]);
        assert_eq!(request_runs(&indices, 1).len(), 11);
    }

    fn states(blob: &CachedBlob) -> Vec<String> {
        lock(&blob.chunks)
            .iter()
            .map(|s| format!("{s:?}"))
            .collect()
    }

    #[test]
    fn a_fetch_settles_only_the_chunks_it_still_owns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("1.data");
        let file = File::create(&path).expect("data file");
        let source = RemoteVersion {
            name: "b".into(),
            etag: "e".into(),
            size: 3 * CHUNK_SIZE,
        };
        let blob = CachedBlob::new(
            1,
            file,
            path,
            Some(source),
            vec![ChunkState::Fetching(1); 3],
        );
        // Fetch 1 delivered chunk 0; it was trimmed and fetch 2 now brings it again.
        blob.mark_present(1, 0..CHUNK_SIZE);
        assert_eq!(states(&blob)[0], "Present");
        lock(&blob.chunks)[0] = ChunkState::Fetching(2);
        // Fetch 1 ends: chunk 0 is not its to settle, or a reader would read a hole.
        blob.mark_present(1, 0..2 * CHUNK_SIZE);
        blob.settle(1, 0..3, &Ok(3 * CHUNK_SIZE));
        assert_eq!(states(&blob), ["Fetching(2)", "Present", "Present"]);
        let failed = FsError::failure(libc::EIO, "broke off");
        blob.settle(2, 0..1, &Err(failed));
        assert!(
            states(&blob)[0].starts_with("Failed"),
            "{:?}",
            states(&blob)
        );
    }

    #[test]
    fn chunk_range_covers_partial_chunks() {
        assert_eq!(chunk_range(&(0..1), 4), 0..1);
        assert_eq!(chunk_range(&(CHUNK_SIZE - 1..CHUNK_SIZE + 1), 4), 0..2);
        assert_eq!(chunk_range(&(CHUNK_SIZE..2 * CHUNK_SIZE), 4), 1..2);
        assert_eq!(chunk_range(&(0..10 * CHUNK_SIZE), 4), 0..4);
        assert_eq!(chunk_range(&(5..5), 4), 0..0);
    }
}
