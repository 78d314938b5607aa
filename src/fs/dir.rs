//! Directory listings: `opendir`/`readdir` streamed from the container's paged listing.
//!
//! A directory handle holds one window of entries: one List Blobs page (up to 5,000 names)
//! and the continuation marker for the next. Reading past the window fetches the next page;
//! reading inside it (a repeated offset) is answered from it; reading before it (a rewind)
//! starts the listing again. So memory per open directory stays bounded however large the
//! directory. Offsets are positions in the whole stream: `.` and `..` are 0 and 1.
//!
//! Every entry a page returns goes into the attribute cache, so the `stat` calls of `ls -l`
//! that follow cost no request. Files created through the mount but not uploaded yet are
//! listed after the last page, so they show at once.
//!
//! A name that is both a blob and a prefix (`a` and `a/b`) is listed once, as a directory; a
//! directory marker blob (`a` with `hdi_isfolder=true`) is the directory itself. The file
//! entry is held back while the listing might still reach `a/`, so this holds across pages.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::debug;

use crate::cache::attr::Remote;
use crate::error::{FsError, FsResult};
use crate::fs::inode::{Kind, ROOT_INO};
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

/// A run of consecutive entries of a listing, starting at stream offset `base`.
pub struct DirWindow {
    pub entries: Arc<Vec<DirEntry>>,
    pub base: u64,
    /// Index in `entries` of the first entry the caller asked for.
    pub start: usize,
}

impl DirWindow {
    /// The requested entries, each with the offset to resume after it (the kernel passes
    /// that back as the next `readdir` offset).
    pub fn resume_points(&self) -> impl Iterator<Item = (u64, &DirEntry)> {
        let base = self.base;
        self.entries
            .iter()
            .enumerate()
            .skip(self.start)
            .map(move |(index, entry)| (base + index as u64 + 1, entry))
    }
}

/// Where a handle is in its directory's listing.
struct Listing {
    /// Stream offset of `window[0]`.
    base: u64,
    window: Arc<Vec<DirEntry>>,
    /// Files whose name may still turn out to be a directory too (see the module docs).
    held_back: BTreeMap<String, Remote>,
    /// Continuation of the paged listing; `None` before the first page and after the last.
    marker: Option<String>,
    started: bool,
    pages_done: bool,
    local_done: bool,
}

impl Listing {
    fn new() -> Self {
        Listing {
            base: 0,
            window: Arc::new(Vec::new()),
            held_back: BTreeMap::new(),
            marker: None,
            started: false,
            pages_done: false,
            local_done: false,
        }
    }
}

pub struct DirHandle {
    ino: u64,
    listing: tokio::sync::Mutex<Listing>,
}

impl Fs {
    /// Opens a directory; also tells whether the kernel may reuse the listing it cached from
    /// an earlier complete read (less than `--attr-ttl` ago). Changes made through the mount
    /// invalidate the kernel's copy by themselves.
    pub fn opendir(&self, ino: u64) -> FsResult<(u64, bool)> {
        let info = self.dir_inode(ino)?;
        let keep_cache = self.inodes.listed_within(ino, self.attr_ttl());
        if !keep_cache && ino != ROOT_INO {
            let (parent, segment) = info.key.rsplit_once('/').unwrap_or(("", &info.key));
            self.dir_prefetch
                .opened(parent, segment, |sibling| name::join(parent, sibling));
        }
        let fh = self.dirs.insert(DirHandle {
            ino,
            listing: tokio::sync::Mutex::new(Listing::new()),
        });
        Ok((fh, keep_cache))
    }

    /// Entries from stream offset `offset` on; the kernel passes back the offset after the
    /// last entry it consumed. An empty window means the end of the directory.
    pub async fn readdir(&self, fh: u64, offset: u64) -> FsResult<DirWindow> {
        let handle = self.dirs.get(fh)?;
        let mut listing = handle.listing.lock().await;
        if offset == 0 || offset < listing.base {
            *listing = Listing::new();
            self.next_window(handle.ino, &mut listing).await?;
        }
        loop {
            let end = listing.base + listing.window.len() as u64;
            if offset < end {
                return Ok(DirWindow {
                    entries: Arc::clone(&listing.window),
                    base: listing.base,
                    start: (offset - listing.base) as usize,
                });
            }
            if listing.local_done {
                // Every listing starts at offset 0, so reaching the end means the kernel has
                // seen all of it.
                self.inodes.set_listed(handle.ino);
                return Ok(DirWindow {
                    entries: Arc::new(Vec::new()),
                    base: end,
                    start: 0,
                });
            }
            self.next_window(handle.ino, &mut listing).await?;
        }
    }

    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        self.dirs.remove(fh).map(|_| ())
    }

    /// Replaces the window with the next one: `.`/`..` plus the first page, a later page, or
    /// finally the files that exist only locally.
    async fn next_window(&self, ino: u64, listing: &mut Listing) -> FsResult<()> {
        let info = self.dir_inode(ino)?;
        let mut entries = Vec::new();
        if !listing.started {
            listing.started = true;
            for dot in [".", ".."] {
                entries.push(DirEntry {
                    name: dot.into(),
                    kind: Kind::Dir,
                    ino,
                    remote: Remote::Dir,
                });
            }
        }
        let mut found: BTreeMap<String, Remote> = BTreeMap::new();
        if !listing.pages_done {
            let prefix = name::dir_prefix(&info.key);
            let first_page = listing.marker.is_none();
            let ahead = if first_page {
                self.dir_prefetch.take(&info.key).await
            } else {
                None
            };
            let page = match ahead {
                Some(page) => page,
                None => self
                    .store
                    .list(&prefix, Some("/"), listing.marker.take(), LIST_PAGE_SIZE)
                    .await
                    .map_err(|e| FsError::from_store("listing", &info.key, e))?,
            };
            listing.marker = page.next_marker;
            listing.pages_done = listing.marker.is_none();
            // Everything in this page sorts after what was held back, so the held-back
            // files are settled as soon as a name past `name/` shows up.
            let mut names: Vec<(String, Remote)> = Vec::new();
            let mut subdirs: Vec<&str> = Vec::new();
            for common in &page.prefixes {
                let segment = common[prefix.len()..].trim_end_matches('/');
                if self.accept(segment, common) {
                    names.push((segment.to_string(), Remote::Dir));
                    subdirs.push(segment);
                }
            }
            self.dir_prefetch
                .saw_subdirs(&info.key, first_page, &subdirs);
            for blob in page.blobs {
                let segment = blob.name[prefix.len()..].to_string();
                if !self.accept(&segment, &blob.name) {
                    continue;
                }
                let remote = if blob.is_dir_marker {
                    Remote::Dir
                } else {
                    Remote::File(blob)
                };
                names.push((segment, remote));
            }
            for (segment, remote) in names {
                match remote {
                    Remote::Dir => {
                        listing.held_back.remove(&segment);
                        found.insert(segment, Remote::Dir);
                    }
                    file => {
                        if !found.contains_key(&segment) {
                            listing.held_back.insert(segment, file);
                        }
                    }
                }
            }
            let last_seen = found.keys().chain(listing.held_back.keys()).max().cloned();
            let settled: Vec<String> = listing
                .held_back
                .keys()
                .filter(|file| {
                    listing.pages_done
                        || last_seen
                            .as_ref()
                            .is_some_and(|last| *last > format!("{file}/"))
                })
                .cloned()
                .collect();
            for file in settled {
                if let Some(remote) = listing.held_back.remove(&file) {
                    found.entry(file).or_insert(remote);
                }
            }
        } else {
            // Not uploaded yet, so no page listed them.
            for local in self.inodes.local_only_children(ino) {
                found.insert(local, Remote::Absent);
            }
            listing.local_done = true;
        }
        for (segment, remote) in found {
            // What the listing saw is what `stat` of each entry answers, for the TTL.
            if remote != Remote::Absent {
                self.attrs
                    .insert(&name::join(&info.key, &segment), remote.clone());
            }
            let child_ino = match self.inodes.child(ino, &segment) {
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
                ino: child_ino,
                remote,
            });
        }
        listing.base += listing.window.len() as u64;
        listing.window = Arc::new(entries);
        Ok(())
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
