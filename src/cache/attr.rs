//! The attribute cache: what the remote side looked like for a blob name, recently.
//!
//! Keys are full blob names (directories without a trailing `/`). A value says the name is a
//! file (with its properties), a directory (a prefix or a marker blob), or absent (a negative
//! entry). Listings insert an entry for every name they return, so a `stat` of each entry after
//! `ls` costs no request. Entries expire after `attr_ttl` (negative ones after `negative_ttl`);
//! a TTL of zero disables caching of that kind.

use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::store::BlobInfo;

/// What a name is on the remote side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    File(BlobInfo),
    Dir,
    Absent,
}

#[derive(Clone, Copy)]
struct TtlPolicy {
    attr_ttl: Duration,
    negative_ttl: Duration,
}

impl TtlPolicy {
    fn ttl_of(&self, value: &Remote) -> Duration {
        match value {
            Remote::Absent => self.negative_ttl,
            _ => self.attr_ttl,
        }
    }
}

impl Expiry<String, Remote> for TtlPolicy {
    fn expire_after_create(&self, _: &String, value: &Remote, _: Instant) -> Option<Duration> {
        Some(self.ttl_of(value))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Remote,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl_of(value))
    }
}

pub struct AttrCache {
    entries: Cache<String, Remote>,
    policy: TtlPolicy,
}

/// Bounds memory: about 300 bytes an entry, so some 300 MB at the very most.
const MAX_ENTRIES: u64 = 1_000_000;

impl AttrCache {
    pub fn new(attr_ttl: Duration, negative_ttl: Duration) -> Self {
        let policy = TtlPolicy {
            attr_ttl,
            negative_ttl,
        };
        let entries = Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .expire_after(policy)
            .build();
        AttrCache { entries, policy }
    }

    pub fn attr_ttl(&self) -> Duration {
        self.policy.attr_ttl
    }

    pub fn negative_ttl(&self) -> Duration {
        self.policy.negative_ttl
    }

    pub fn get(&self, name: &str) -> Option<Remote> {
        self.entries.get(name)
    }

    pub fn insert(&self, name: &str, value: Remote) {
        if self.policy.ttl_of(&value).is_zero() {
            // Nothing may be served from the cache: keep it empty rather than expired.
            self.entries.invalidate(name);
            return;
        }
        self.entries.insert(name.to_string(), value);
    }

    pub fn invalidate(&self, name: &str) {
        self.entries.invalidate(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_entries_expire_after_their_own_ttl() {
        let cache = AttrCache::new(Duration::from_secs(60), Duration::from_millis(50));
        cache.insert("gone", Remote::Absent);
        cache.insert("dir", Remote::Dir);
        assert_eq!(cache.get("gone"), Some(Remote::Absent));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.get("gone"), None);
        assert_eq!(cache.get("dir"), Some(Remote::Dir));
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let cache = AttrCache::new(Duration::ZERO, Duration::ZERO);
        cache.insert("dir", Remote::Dir);
        assert_eq!(cache.get("dir"), None);
    }
}
