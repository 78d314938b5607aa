//! Directory listings: `opendir`/`readdir` over the container's delimited listing.
//!
//! A directory's listing is fetched page by page when its handle is first read (or rewound to
//! offset 0) and kept with the handle, so repeated and rewound offsets are answered
//! consistently. Every entry the listing returns goes into the attribute cache, so the
//! `stat` calls of `ls -l` that follow cost no request. Files created through the mount but
//! not uploaded yet are added, so they show at once.
//!
//! A name that is both a blob and a prefix (`a` and `a/b`) is listed once, as a directory; a
//! directory marker blob (`a` with `hdi_isfolder=true`) is the directory itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::debug;

use crate::cache::attr::Remote;
use crate::error::{FsError, FsResult};
use crate::fs::inode::Kind;
use crate::fs::{name, Fs};

/// Entries per List Blobs page: the service's maximum.
pub const LIST_PAGE_SIZE: u32 = 5000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: Kind,
    /// Reported as `d_ino`; the inode number if the kernel knows the entry, else a stable
    /// stand-in derived from the name (lookup assigns the real one).
    pub ino: u64,
}

pub struct DirHandle {
    ino: u64,
    entries: Mutex<Option<Arc<Vec<DirEntry>>>>,
}

impl Fs {
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        self.dir_inode(ino)?;
        Ok(self.dirs.insert(DirHandle {
            ino,
            entries: Mutex::new(None),
        }))
    }

    /// Entries from index `offset` on (`.` and `..` first); the kernel passes back the index
    /// after the last entry it consumed.
    pub async fn readdir(&self, fh: u64, offset: u64) -> FsResult<(Arc<Vec<DirEntry>>, usize)> {
        let handle = self.dirs.get(fh)?;
        let cached = handle
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let entries = match cached {
            Some(entries) if offset > 0 => entries,
            _ => {
                let entries = Arc::new(self.list_dir(handle.ino).await?);
                *handle.entries.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::clone(&entries));
                entries
            }
        };
        let start = (offset as usize).min(entries.len());
        Ok((entries, start))
    }

    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        self.dirs.remove(fh).map(|_| ())
    }

    /// The full listing of a directory, every page, merged with local-only files.
    async fn list_dir(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        let info = self.dir_inode(ino)?;
        let prefix = name::dir_prefix(&info.key);
        let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
        let mut marker = None;
        loop {
            let page = self
                .store
                .list(&prefix, Some("/"), marker, LIST_PAGE_SIZE)
                .await
                .map_err(|e| FsError::from_store("listing", &info.key, e))?;
            for common in &page.prefixes {
                let segment = common[prefix.len()..].trim_end_matches('/');
                if self.accept(segment, common) {
                    self.attrs
                        .insert(&name::join(&info.key, segment), Remote::Dir);
                    kinds.insert(segment.to_string(), Kind::Dir);
                }
            }
            for blob in page.blobs {
                let segment = &blob.name[prefix.len()..];
                if !self.accept(segment, &blob.name) {
                    continue;
                }
                if blob.is_dir_marker {
                    self.attrs.insert(&blob.name, Remote::Dir);
                    kinds.insert(segment.to_string(), Kind::Dir);
                } else if !kinds.contains_key(segment) {
                    // If a prefix of the same name comes later it replaces the file.
                    kinds.insert(segment.to_string(), Kind::File);
                    if self.attrs.get(&blob.name) != Some(Remote::Dir) {
                        self.attrs.insert(&blob.name.clone(), Remote::File(blob));
                    }
                }
            }
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
        for local in self.inodes.local_only_children(ino) {
            kinds.entry(local).or_insert(Kind::File);
        }
        let mut entries = Vec::with_capacity(kinds.len() + 2);
        entries.push(DirEntry {
            name: ".".into(),
            kind: Kind::Dir,
            ino,
        });
        entries.push(DirEntry {
            name: "..".into(),
            kind: Kind::Dir,
            ino,
        });
        for (segment, kind) in kinds {
            let ino = match self.inodes.child(ino, &segment) {
                Some(child) => child.ino,
                None => stand_in_ino(&info.key, &segment),
            };
            entries.push(DirEntry {
                name: segment,
                kind,
                ino,
            });
        }
        Ok(entries)
    }

    fn accept(&self, segment: &str, blob: &str) -> bool {
        let ok = name::is_valid_segment(segment);
        if !ok {
            debug!(blob, "skipping a blob whose name cannot be a file name");
        }
        ok
    }
}

/// A stable number for an entry the kernel has not looked up yet; high bit set so it never
/// collides with the table's sequential inode numbers.
fn stand_in_ino(dir: &str, segment: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (dir, segment).hash(&mut hasher);
    hasher.finish() | (1 << 63)
}
