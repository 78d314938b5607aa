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
use crate::fs::{name, Fs, Stat};

/// Entries per List Blobs page: the service's maximum.
pub const LIST_PAGE_SIZE: u32 = 5000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: Kind,
    /// Reported as `d_ino`; the inode number if the kernel knows the entry, else a stable
    /// stand-in derived from the name (lookup assigns the real one).
    pub ino: u64,
    /// What the listing said (`Absent` for a file that so far exists only locally).
    pub remote: Remote,
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
        let mut found: BTreeMap<String, Remote> = BTreeMap::new();
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
                    found.insert(segment.to_string(), Remote::Dir);
                }
            }
            for blob in page.blobs {
                let segment = &blob.name[prefix.len()..];
                if !self.accept(segment, &blob.name) {
                    continue;
                }
                if blob.is_dir_marker {
                    found.insert(segment.to_string(), Remote::Dir);
                } else if !found.contains_key(segment) {
                    // A prefix of the same name, listed later, replaces the file.
                    found.insert(segment.to_string(), Remote::File(blob));
                }
            }
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
        for local in self.inodes.local_only_children(ino) {
            found.entry(local).or_insert(Remote::Absent);
        }
        let mut entries = Vec::with_capacity(found.len() + 2);
        for dot in [".", ".."] {
            entries.push(DirEntry {
                name: dot.into(),
                kind: Kind::Dir,
                ino,
                remote: Remote::Dir,
            });
        }
        for (segment, remote) in found {
            // What the listing saw is what `stat` of each entry answers, for the TTL.
            if remote != Remote::Absent {
                self.attrs
                    .insert(&name::join(&info.key, &segment), remote.clone());
            }
            let ino = match self.inodes.child(ino, &segment) {
                Some(child) => child.ino,
                None => stand_in_ino(&info.key, &segment),
            };
            let kind = if remote == Remote::Dir {
                Kind::Dir
            } else {
                Kind::File
            };
            entries.push(DirEntry {
                name: segment,
                kind,
                ino,
                remote,
            });
        }
        Ok(entries)
    }

    /// For `readdirplus`: the attributes of a listed entry, counted as a lookup (the kernel
    /// will `forget` it like any looked-up entry). `.` and `..` are not counted.
    pub fn readdirplus_entry(&self, parent: u64, entry: &DirEntry) -> Stat {
        if entry.name == "." || entry.name == ".." {
            return self.dir_stat(entry.ino);
        }
        let ino = self.inodes.lookup_child(parent, &entry.name, entry.kind);
        if let Some(file) = self.inodes.get(ino).and_then(|info| info.file) {
            return self.file_stat(ino, &file);
        }
        match &entry.remote {
            Remote::File(blob) => self.make_stat(ino, Kind::File, blob.size, blob.last_modified),
            _ => self.dir_stat(ino),
        }
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
