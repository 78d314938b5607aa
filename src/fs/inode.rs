//! The inode table: inode numbers ↔ (parent, name), with the kernel's lookup counts.
//!
//! An inode stores only its parent and its own name; its blob name is computed by walking up
//! to the root, so renaming a directory is one update however many entries lie below it.
//! Entries live while the kernel holds a lookup reference or a file is open or dirty; `forget`
//! drops the rest, so memory follows what the kernel caches, not what was ever listed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::file::OpenFile;
use crate::fs::name;

pub const ROOT_INO: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

struct Inode {
    parent: u64,
    name: String,
    kind: Kind,
    lookups: u64,
    /// Open or dirty file state; keeps the inode alive while set.
    file: Option<Arc<OpenFile>>,
    /// Open file handles on this inode.
    handles: u32,
    /// The version whose pages the kernel may still cache for this inode (see
    /// [`InodeTable::swap_cached_version`]).
    kernel_cached_etag: Option<String>,
    /// For a directory: when a complete listing of it was last handed to the kernel.
    listed_at: Option<std::time::Instant>,
    /// Removed from its directory (unlinked, replaced) while the kernel still knew it.
    detached: bool,
}

impl Inode {
    /// A freshly looked-up inode: one lookup reference, nothing open.
    fn new(parent: u64, name: String, kind: Kind) -> Self {
        Inode {
            parent,
            name,
            kind,
            lookups: 1,
            file: None,
            handles: 0,
            kernel_cached_etag: None,
            listed_at: None,
            detached: false,
        }
    }
}

/// What callers get about an inode: a copy, so no lock is held while they work.
#[derive(Clone)]
pub struct InodeInfo {
    pub ino: u64,
    pub kind: Kind,
    /// Full blob name (mount prefix included); "" for the root of a whole-container mount.
    pub key: String,
    pub file: Option<Arc<OpenFile>>,
    pub detached: bool,
}

struct Tables {
    inodes: HashMap<u64, Inode>,
    children: HashMap<(u64, String), u64>,
    /// Files created through the mount and not uploaded yet, by directory: listings add them.
    local_only: HashMap<u64, BTreeSet<String>>,
    next_ino: u64,
}

pub struct InodeTable {
    prefix: String,
    tables: Mutex<Tables>,
}

impl InodeTable {
    /// `prefix` is the blob name of the mount's root ("" for a whole container).
    pub fn new(prefix: &str) -> Self {
        let root = Inode::new(ROOT_INO, String::new(), Kind::Dir);
        InodeTable {
            prefix: prefix.to_string(),
            tables: Mutex::new(Tables {
                inodes: HashMap::from([(ROOT_INO, root)]),
                children: HashMap::new(),
                local_only: HashMap::new(),
                next_ino: ROOT_INO + 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Every critical section leaves the maps consistent, so poisoning carries no meaning.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_of(&self, tables: &Tables, ino: u64) -> Option<String> {
        let mut segments = Vec::new();
        let mut current = ino;
        while current != ROOT_INO {
            let inode = tables.inodes.get(&current)?;
            segments.push(inode.name.as_str());
            current = inode.parent;
        }
        let mut key = self.prefix.clone();
        for segment in segments.iter().rev() {
            key = name::join(&key, segment);
        }
        Some(key)
    }

    fn info(&self, tables: &Tables, ino: u64) -> Option<InodeInfo> {
        let inode = tables.inodes.get(&ino)?;
        Some(InodeInfo {
            ino,
            kind: inode.kind,
            key: self.key_of(tables, ino)?,
            file: inode.file.clone(),
            detached: inode.detached,
        })
    }

    pub fn get(&self, ino: u64) -> Option<InodeInfo> {
        let tables = self.lock();
        self.info(&tables, ino)
    }

    /// The blob name an entry `segment` of directory `parent` has.
    pub fn child_key(&self, parent: u64, segment: &str) -> Option<String> {
        let tables = self.lock();
        self.key_of(&tables, parent)
            .map(|k| name::join(&k, segment))
    }

    /// The inode of `segment` in `parent`, if the table knows it.
    pub fn child(&self, parent: u64, segment: &str) -> Option<InodeInfo> {
        let tables = self.lock();
        let ino = *tables.children.get(&(parent, segment.to_string()))?;
        self.info(&tables, ino)
    }

    /// Records that the kernel now knows `segment` in `parent` as `kind` (one lookup
    /// reference). An entry of another kind under that name is replaced by a new inode.
    pub fn lookup_child(&self, parent: u64, segment: &str, kind: Kind) -> u64 {
        let mut tables = self.lock();
        let key = (parent, segment.to_string());
        if let Some(&ino) = tables.children.get(&key) {
            if let Some(inode) = tables.inodes.get_mut(&ino) {
                if inode.kind == kind {
                    inode.lookups += 1;
                    return ino;
                }
                inode.detached = true;
            }
        }
        let ino = tables.next_ino;
        tables.next_ino += 1;
        tables
            .inodes
            .insert(ino, Inode::new(parent, segment.to_string(), kind));
        tables.children.insert(key, ino);
        ino
    }

    /// The kernel dropped `count` references.
    pub fn forget(&self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut tables = self.lock();
        let Some(inode) = tables.inodes.get_mut(&ino) else {
            return;
        };
        inode.lookups = inode.lookups.saturating_sub(count);
        if inode.lookups == 0 && inode.file.is_none() {
            Self::remove(&mut tables, ino);
        }
    }

    fn remove(tables: &mut Tables, ino: u64) {
        if let Some(inode) = tables.inodes.remove(&ino) {
            let key = (inode.parent, inode.name);
            if tables.children.get(&key) == Some(&ino) {
                tables.children.remove(&key);
            }
        }
    }

    /// Attaches open-file state unless some is attached already; returns the one in place.
    pub fn attach_file(&self, ino: u64, file: Arc<OpenFile>) -> Arc<OpenFile> {
        let mut tables = self.lock();
        match tables.inodes.get_mut(&ino) {
            Some(inode) => Arc::clone(inode.file.get_or_insert(file)),
            None => file,
        }
    }

    /// Attaches open-file state, replacing any (create over an existing name).
    pub fn replace_file(&self, ino: u64, file: Arc<OpenFile>) -> Arc<OpenFile> {
        let mut tables = self.lock();
        if let Some(inode) = tables.inodes.get_mut(&ino) {
            inode.file = Some(Arc::clone(&file));
        }
        file
    }

    pub fn add_handle(&self, ino: u64) {
        if let Some(inode) = self.lock().inodes.get_mut(&ino) {
            inode.handles += 1;
        }
    }

    /// One handle closed. Returns true when it was the last; then the open-file state is
    /// dropped too, unless `keep_state` (dirty data still to upload).
    pub fn remove_handle(&self, ino: u64, keep_state: bool) -> bool {
        let mut tables = self.lock();
        let Some(inode) = tables.inodes.get_mut(&ino) else {
            return false;
        };
        inode.handles = inode.handles.saturating_sub(1);
        if inode.handles > 0 {
            return false;
        }
        if !keep_state {
            inode.file = None;
            if inode.lookups == 0 {
                Self::remove(&mut tables, ino);
            }
        }
        true
    }

    /// Records that the kernel's page cache now holds version `etag` of the inode's content,
    /// and tells whether it held that same version before: then the pages may be kept on open
    /// (`FOPEN_KEEP_CACHE`), otherwise they must be dropped.
    pub fn swap_cached_version(&self, ino: u64, etag: Option<String>) -> bool {
        let mut tables = self.lock();
        let Some(inode) = tables.inodes.get_mut(&ino) else {
            return false;
        };
        let same = etag.is_some() && inode.kernel_cached_etag == etag;
        inode.kernel_cached_etag = etag;
        same
    }

    /// Records that the kernel was just given a complete listing of directory `ino`.
    pub fn set_listed(&self, ino: u64) {
        if let Some(inode) = self.lock().inodes.get_mut(&ino) {
            inode.listed_at = Some(std::time::Instant::now());
        }
    }

    /// Whether the kernel got a complete listing of directory `ino` less than `ttl` ago.
    pub fn listed_within(&self, ino: u64, ttl: std::time::Duration) -> bool {
        self.lock()
            .inodes
            .get(&ino)
            .and_then(|inode| inode.listed_at)
            .is_some_and(|at| at.elapsed() < ttl)
    }

    /// Drops the open-file state of an inode nobody has open (after a final upload).
    pub fn clear_file(&self, ino: u64) {
        let mut tables = self.lock();
        let Some(inode) = tables.inodes.get_mut(&ino) else {
            return;
        };
        if inode.handles == 0 {
            inode.file = None;
            if inode.lookups == 0 {
                Self::remove(&mut tables, ino);
            }
        }
    }

    /// Removes `segment` from `parent` (unlink, rmdir); open handles keep the inode.
    pub fn detach_child(&self, parent: u64, segment: &str) {
        let mut tables = self.lock();
        if let Some(ino) = tables.children.remove(&(parent, segment.to_string())) {
            if let Some(inode) = tables.inodes.get_mut(&ino) {
                inode.detached = true;
            }
        }
        if let Some(names) = tables.local_only.get_mut(&parent) {
            names.remove(segment);
        }
    }

    /// Moves an entry; whatever `new_parent`/`new_name` named before is detached.
    pub fn rename(&self, parent: u64, old_name: &str, new_parent: u64, new_name: &str) {
        let mut tables = self.lock();
        let new_key = (new_parent, new_name.to_string());
        if let Some(old_target) = tables.children.remove(&new_key) {
            if let Some(inode) = tables.inodes.get_mut(&old_target) {
                inode.detached = true;
            }
        }
        let was_local = tables
            .local_only
            .get_mut(&parent)
            .is_some_and(|names| names.remove(old_name));
        if let Some(names) = tables.local_only.get_mut(&new_parent) {
            names.remove(new_name);
        }
        if let Some(ino) = tables.children.remove(&(parent, old_name.to_string())) {
            if let Some(inode) = tables.inodes.get_mut(&ino) {
                inode.parent = new_parent;
                inode.name = new_name.to_string();
            }
            tables.children.insert(new_key, ino);
        }
        if was_local {
            tables
                .local_only
                .entry(new_parent)
                .or_default()
                .insert(new_name.to_string());
        }
    }

    /// Marks a file as existing only locally (created, not uploaded yet), or no longer so.
    pub fn set_local_only(&self, ino: u64, local: bool) {
        let mut tables = self.lock();
        let Some(inode) = tables.inodes.get(&ino) else {
            return;
        };
        let (parent, name) = (inode.parent, inode.name.clone());
        if local {
            tables.local_only.entry(parent).or_default().insert(name);
        } else if let Some(names) = tables.local_only.get_mut(&parent) {
            names.remove(&name);
            if names.is_empty() {
                tables.local_only.remove(&parent);
            }
        }
    }

    /// Files of `parent` that exist only locally so far.
    pub fn local_only_children(&self, parent: u64) -> Vec<String> {
        self.lock()
            .local_only
            .get(&parent)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every inode with open-file state (for the final upload at unmount).
    pub fn open_files(&self) -> Vec<InodeInfo> {
        let tables = self.lock();
        tables
            .inodes
            .iter()
            .filter(|(_, inode)| inode.file.is_some())
            .filter_map(|(&ino, _)| self.info(&tables, ino))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_renamed_directories() {
        let table = InodeTable::new("pre");
        let dir = table.lookup_child(ROOT_INO, "a", Kind::Dir);
        let file = table.lookup_child(dir, "f.txt", Kind::File);
        assert_eq!(
            table.get(file).map(|i| i.key),
            Some("pre/a/f.txt".to_string())
        );
        table.rename(ROOT_INO, "a", ROOT_INO, "b");
        assert_eq!(
            table.get(file).map(|i| i.key),
            Some("pre/b/f.txt".to_string())
        );
        assert!(table.child(ROOT_INO, "a").is_none());
    }

    #[test]
    fn forget_frees_entries_without_open_state() {
        let table = InodeTable::new("");
        let ino = table.lookup_child(ROOT_INO, "x", Kind::File);
        assert_eq!(table.lookup_child(ROOT_INO, "x", Kind::File), ino);
        table.forget(ino, 1);
        assert!(table.get(ino).is_some());
        table.forget(ino, 1);
        assert!(table.get(ino).is_none());
        assert!(table.child(ROOT_INO, "x").is_none());
    }

    #[test]
    fn a_kind_change_gets_a_new_inode() {
        let table = InodeTable::new("");
        let file = table.lookup_child(ROOT_INO, "x", Kind::File);
        let dir = table.lookup_child(ROOT_INO, "x", Kind::Dir);
        assert_ne!(file, dir);
        assert!(table.get(file).is_some_and(|i| i.detached));
    }
}
