//! What the content cache keeps on disk between mounts, and how a new mount picks it up.
//!
//! Per cached blob version the cache directory holds `<id>.data` (the sparse content) and, once
//! the blob is idle or the mount ends, `<id>.meta`: its blob name, ETag, size and which chunks
//! are present. A later mount reuses the data when the blob still has that ETag. A blob with
//! local changes not yet uploaded has `<id>.dirty` instead (its `.meta` is removed when the
//! first change is made, so stale metadata never describes changed content).
//!
//! Start-up recovery, in order: a `.dirty` file's data moves to `lost+found/` (never deleted;
//! a warning names it); a `.data` with a readable `.meta` is reused; anything else is removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

const FORMAT: u32 = 1;

/// The `.meta` sidecar of one cached blob version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sidecar {
    pub format: u32,
    pub name: String,
    pub etag: String,
    pub size: u64,
    /// Present chunks, as half-open ranges of chunk indices.
    pub present: Vec<(usize, usize)>,
}

impl Sidecar {
    pub fn new(name: String, etag: String, size: u64, present: Vec<(usize, usize)>) -> Self {
        Sidecar {
            format: FORMAT,
            name,
            etag,
            size,
            present,
        }
    }
}

/// A cached blob found at start-up, ready to be indexed again.
pub struct Recovered {
    pub id: u64,
    pub data: PathBuf,
    pub sidecar: Sidecar,
}

pub fn meta_path(data: &Path) -> PathBuf {
    data.with_extension("meta")
}

pub fn dirty_path(data: &Path) -> PathBuf {
    data.with_extension("dirty")
}

/// Writes the sidecar atomically (write to a temporary name, then rename), so a crash leaves
/// either the old or the new one.
pub fn save(data: &Path, sidecar: &Sidecar) -> std::io::Result<()> {
    let json = serde_json::to_vec(sidecar).map_err(std::io::Error::other)?;
    let tmp = data.with_extension("meta.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, meta_path(data))
}

fn load(meta: &Path) -> Option<Sidecar> {
    let bytes = std::fs::read(meta).ok()?;
    let sidecar: Sidecar = serde_json::from_slice(&bytes).ok()?;
    (sidecar.format == FORMAT).then_some(sidecar)
}

/// Recovers the cache directory `dir` (see the module docs), oldest first.
pub fn recover(dir: &Path, lost_and_found: &Path) -> std::io::Result<Vec<Recovered>> {
    let mut recovered = Vec::new();
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("dirty") => keep_unsaved(&path, lost_and_found)?,
            Some("data") => {
                let id = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok());
                let sidecar = load(&meta_path(&path));
                match (id, sidecar) {
                    (Some(id), Some(sidecar)) if !dirty_path(&path).exists() => {
                        let age = std::fs::metadata(meta_path(&path))
                            .and_then(|m| m.modified())
                            .ok();
                        recovered.push((
                            age,
                            Recovered {
                                id,
                                data: path,
                                sidecar,
                            },
                        ));
                    }
                    _ => stale.push(path),
                }
            }
            Some("meta") => {
                if !path.with_extension("data").exists() {
                    stale.push(path);
                }
            }
            _ => stale.push(path),
        }
    }
    for path in stale {
        if path.exists() && !dirty_path(&path).exists() {
            std::fs::remove_file(&path)?;
        }
    }
    recovered.sort_by_key(|(age, _)| *age);
    Ok(recovered.into_iter().map(|(_, r)| r).collect())
}

/// Moves a previous run's unsaved data to lost+found, with the blob name beside it.
fn keep_unsaved(dirty: &Path, lost_and_found: &Path) -> std::io::Result<()> {
    let data = dirty.with_extension("data");
    let name = std::fs::read_to_string(dirty).unwrap_or_default();
    if data.exists() {
        std::fs::create_dir_all(lost_and_found)?;
        let stem = dirty
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("unknown");
        let target = lost_and_found.join(format!("previous-{stem}-{}", safe_file_name(&name)));
        std::fs::rename(&data, &target)?;
        std::fs::write(target.with_extension("blobname"), &name)?;
        warn!(
            blob = %name,
            kept_at = %target.display(),
            "a previous run ended with changes to this blob not uploaded; the local copy is kept"
        );
    }
    let _ = std::fs::remove_file(meta_path(&data));
    std::fs::remove_file(dirty)
}

/// A file name for blob `name` that is safe in one directory.
pub fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_reuses_described_data_keeps_dirty_data_and_drops_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lost = dir.path().join("lost+found");
        let clean = dir.path().join("1.data");
        std::fs::write(&clean, b"clean").expect("write");
        save(
            &clean,
            &Sidecar::new("a".into(), "\"e1\"".into(), 5, vec![(0, 1)]),
        )
        .expect("save");
        let dirty = dir.path().join("2.data");
        std::fs::write(&dirty, b"mine").expect("write");
        std::fs::write(dirty_path(&dirty), "dir/b.txt").expect("write");
        let orphan = dir.path().join("3.data");
        std::fs::write(&orphan, b"?").expect("write");

        let recovered = recover(dir.path(), &lost).expect("recover");
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].id, 1);
        assert_eq!(recovered[0].sidecar.etag, "\"e1\"");
        assert!(!orphan.exists());
        assert!(!dirty.exists());
        let kept = lost.join("previous-2-dir_b.txt");
        assert_eq!(std::fs::read(&kept).expect("kept"), b"mine");
        assert_eq!(
            std::fs::read_to_string(kept.with_extension("blobname")).expect("name"),
            "dir/b.txt"
        );
    }
}
