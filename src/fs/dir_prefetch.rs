//! Directory read-ahead: listing the next sibling directories while a tree walk is busy with
//! the current one.
//!
//! A walker (`find`, `du`, `os.walk`, `glob("**")`) goes depth first: it lists a directory,
//! then each of its sub-directories in listing order. Done one by one, the walk costs one
//! listing round trip per directory. So when a directory whose parent we listed is opened, the
//! first pages of the next [`SIBLINGS_AHEAD`] sibling directories are requested in the
//! background ([`MAX_IN_FLIGHT`] at a time); opening one of them then takes the page that is
//! ready (or waits for the request already under way) instead of listing again.
//!
//! Only an `opendir` of a child triggers it, never a plain listing: `ls -l dir` costs exactly
//! its own listing, while `ls dir/sub` may cost up to [`SIBLINGS_AHEAD`] more.
//!
//! Consistency: a prefetched page is used once, and only within 5 s of its request (or
//! `--attr-ttl`, if shorter), so a change made elsewhere shows at most that much later than the
//! TTL promises. Any change made through the mount drops every prefetched page
//! ([`DirPrefetch::forget_all`]), so a listing never misses a local change; a request still in
//! flight then finishes into nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::store::{BlobStore, ListPage, StoreError};

/// Sibling directories listed ahead of a walker.
pub const SIBLINGS_AHEAD: usize = 8;
/// Read-ahead listing requests in flight at once.
pub const MAX_IN_FLIGHT: usize = 4;
/// Prefetched pages held at most. A page of 5,000 entries takes about 1 MiB, so this bounds
/// the memory of pages nobody took; a walker keeps about `SIBLINGS_AHEAD` of them.
const MAX_PREFETCHED: usize = 16;
/// Sub-directory names remembered per listed directory: walks of wider directories get
/// read-ahead only over their first names.
const MAX_SUBDIRS: usize = 10_000;
/// A prefetched page is used only this soon after its request (or within `--attr-ttl`, if
/// shorter). What it lists then enters the attribute cache for `--attr-ttl`, so a change made
/// elsewhere shows at most this much later than without read-ahead; a walker takes its pages
/// within moments.
const MAX_PAGE_AGE: Duration = Duration::from_secs(5);
/// Listed directories remembered (with their sub-directory names).
const MAX_LISTED: usize = 1024;

/// A first page requested ahead of time.
struct Prefetched {
    requested: Instant,
    page: JoinHandle<Result<ListPage, StoreError>>,
}

/// What a recent listing of a directory showed.
struct Listed {
    at: Instant,
    /// Sub-directory names, in listing order.
    subdirs: Vec<String>,
}

struct State {
    /// By directory key.
    pages: HashMap<String, Prefetched>,
    /// Recently listed directories, by key.
    listed: lru::LruCache<String, Listed>,
}

pub struct DirPrefetch {
    store: Arc<dyn BlobStore>,
    page_size: u32,
    /// `--attr-ttl`: how long a listing the kernel read stays in its cache.
    ttl: Duration,
    /// How long a prefetched page stays usable (see [`MAX_PAGE_AGE`]).
    page_lifetime: Duration,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update leaves the maps consistent, so a panic elsewhere does not poison them.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl DirPrefetch {
    /// `ttl` is `--attr-ttl`; zero disables read-ahead.
    pub fn new(store: Arc<dyn BlobStore>, page_size: u32, ttl: Duration) -> Self {
        DirPrefetch {
            store,
            page_size,
            ttl,
            page_lifetime: ttl.min(MAX_PAGE_AGE),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            state: Mutex::new(State {
                pages: HashMap::new(),
                listed: lru::LruCache::new(
                    std::num::NonZeroUsize::new(MAX_LISTED).unwrap_or(std::num::NonZeroUsize::MIN),
                ),
            }),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Records sub-directory names that a listing of directory `dir` returned (page after
    /// page, in order).
    pub fn saw_subdirs(&self, dir: &str, first_page: bool, names: &[&str]) {
        if !self.enabled() {
            return;
        }
        let mut state = lock(&self.state);
        if first_page {
            let listed = Listed {
                at: Instant::now(),
                subdirs: Vec::new(),
            };
            state.listed.put(dir.to_string(), listed);
        }
        if let Some(known) = state.listed.get_mut(dir) {
            let room = MAX_SUBDIRS.saturating_sub(known.subdirs.len());
            known
                .subdirs
                .extend(names.iter().take(room).map(|n| n.to_string()));
        }
    }

    /// Directory `segment` of `parent` is being opened: list its next siblings ahead.
    /// `dir_key` maps a sibling's name to its directory key.
    pub fn opened(&self, parent: &str, segment: &str, dir_key: impl Fn(&str) -> String) {
        if !self.enabled() {
            return;
        }
        let mut state = lock(&self.state);
        let Some(siblings) = state.listed.get(parent).map(|l| &l.subdirs) else {
            return;
        };
        let Some(position) = siblings.iter().position(|s| s == segment) else {
            return;
        };
        let ahead: Vec<String> = siblings[position + 1..]
            .iter()
            .take(SIBLINGS_AHEAD)
            .map(|s| dir_key(s))
            .collect();
        state
            .pages
            .retain(|_, p| p.requested.elapsed() < self.page_lifetime);
        for key in ahead {
            if state.pages.len() >= MAX_PREFETCHED {
                break;
            }
            let fresh = |l: &Listed| l.at.elapsed() < self.ttl;
            if state.pages.contains_key(&key) || state.listed.peek(&key).is_some_and(fresh) {
                // Under way, or listed a moment ago (the kernel keeps that listing).
                continue;
            }
            let page = self.spawn_listing(key.clone());
            state.pages.insert(
                key,
                Prefetched {
                    requested: Instant::now(),
                    page,
                },
            );
        }
    }

    fn spawn_listing(&self, key: String) -> JoinHandle<Result<ListPage, StoreError>> {
        let store = Arc::clone(&self.store);
        let slots = Arc::clone(&self.slots);
        let page_size = self.page_size;
        tokio::spawn(async move {
            // The semaphore is never closed; without a permit the request simply goes ahead.
            let _permit = slots.acquire_owned().await.ok();
            debug!(dir = %key, "listing ahead");
            store
                .list(&super::name::dir_prefix(&key), Some("/"), None, page_size)
                .await
        })
    }

    /// The first page of directory `dir`, if one was requested ahead and is still fresh
    /// enough: waits for it if it is still on its way. `None` means: list it now.
    pub async fn take(&self, dir: &str) -> Option<ListPage> {
        let prefetched = lock(&self.state).pages.remove(dir)?;
        if prefetched.requested.elapsed() >= self.page_lifetime {
            prefetched.page.abort();
            return None;
        }
        match prefetched.page.await {
            Ok(Ok(page)) => Some(page),
            // A failed read-ahead is retried as an ordinary listing, which reports the error.
            Ok(Err(err)) => {
                debug!(dir, "read-ahead listing failed: {err}");
                None
            }
            Err(_) => None,
        }
    }

    /// Something changed through the mount: no prefetched page may be used any more.
    pub fn forget_all(&self) {
        let mut state = lock(&self.state);
        for (_, prefetched) in state.pages.drain() {
            prefetched.page.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::counting::CountingStore;
    use crate::store::memory::MemoryStore;
    use crate::store::WriteCondition;

    async fn store_with_tree() -> Arc<CountingStore<MemoryStore>> {
        let memory = MemoryStore::new();
        for dir in ["a", "b", "c", "d"] {
            let body = bytes::Bytes::from_static(b"x");
            memory
                .put(&format!("{dir}/f"), body, &WriteCondition::None)
                .await
                .expect("put");
        }
        Arc::new(CountingStore::new(memory))
    }

    #[tokio::test]
    async fn opening_a_subdirectory_lists_its_next_siblings_once() {
        let store = store_with_tree().await;
        let prefetch = DirPrefetch::new(store.clone(), 5000, Duration::from_secs(60));
        prefetch.saw_subdirs("", true, &["a", "b", "c", "d"]);
        prefetch.opened("", "b", |s| s.to_string());
        let c = prefetch.take("c").await.expect("c was listed ahead");
        assert_eq!(c.blobs[0].name, "c/f");
        assert!(prefetch.take("d").await.is_some());
        // Neither the opened directory nor earlier siblings, and each page is used once.
        assert!(prefetch.take("a").await.is_none());
        assert!(prefetch.take("b").await.is_none());
        assert!(prefetch.take("c").await.is_none());
        assert_eq!(store.counts().snapshot().list, 2);
        // Siblings listed a moment ago are not listed again.
        prefetch.saw_subdirs("c", true, &[]);
        prefetch.opened("", "a", |s| s.to_string());
        assert!(prefetch.take("c").await.is_none());
        assert!(prefetch.take("b").await.is_some());
        assert!(prefetch.take("d").await.is_some());
        assert_eq!(store.counts().snapshot().list, 4);
    }

    #[tokio::test]
    async fn local_changes_and_a_zero_ttl_leave_nothing_to_take() {
        let store = store_with_tree().await;
        let prefetch = DirPrefetch::new(store.clone(), 5000, Duration::from_secs(60));
        prefetch.saw_subdirs("", true, &["a", "b", "c"]);
        prefetch.opened("", "a", |s| s.to_string());
        prefetch.forget_all();
        assert!(prefetch.take("b").await.is_none());

        let off = DirPrefetch::new(store.clone(), 5000, Duration::ZERO);
        off.saw_subdirs("", true, &["a", "b", "c"]);
        off.opened("", "a", |s| s.to_string());
        assert!(off.take("b").await.is_none());
    }

    #[tokio::test]
    async fn unknown_parents_and_names_prefetch_nothing() {
        let store = store_with_tree().await;
        let prefetch = DirPrefetch::new(store.clone(), 5000, Duration::from_secs(60));
        prefetch.opened("", "a", |s| s.to_string());
        prefetch.saw_subdirs("", true, &["a", "b"]);
        prefetch.opened("", "zzz", |s| s.to_string());
        tokio::task::yield_now().await;
        assert!(prefetch.take("b").await.is_none());
        assert_eq!(store.counts().snapshot().list, 0);
    }
}
