//! Drives the filesystem core without a kernel, on the in-memory store: the logic of names,
//! listings, writes, uploads and conflicts, fast.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use azblobfs::cache::attr::AttrCache;
use azblobfs::cache::content::ContentCache;
use azblobfs::error::FsResult;
use azblobfs::fs::inode::{Kind, ROOT_INO};
use azblobfs::fs::{Fs, Presentation, Stat};
use azblobfs::store::counting::{CountingStore, RequestCounts};
use azblobfs::store::memory::MemoryStore;
use azblobfs::store::{BlobStore, WriteCondition};
use bytes::Bytes;

struct Harness {
    fs: Fs,
    store: Arc<CountingStore<MemoryStore>>,
    counts: Arc<RequestCounts>,
    _cache: tempfile::TempDir,
}

fn harness_with(prefix: &str, budget: u64) -> Harness {
    harness_with_ttl(prefix, budget, Duration::from_secs(60))
}

/// A filesystem over `store` as the daemon makes one, its content cache in `cache_dir/data`.
fn new_fs(
    store: Arc<dyn BlobStore>,
    cache_dir: &Path,
    prefix: &str,
    budget: u64,
    attr_ttl: Duration,
) -> Fs {
    let content =
        ContentCache::new(cache_dir.join("data"), budget, Arc::clone(&store)).expect("cache");
    Fs::new(
        store,
        prefix,
        Arc::new(content),
        AttrCache::new(attr_ttl, Duration::from_secs(5)),
        Presentation {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            read_only: false,
        },
    )
}

fn harness_with_ttl(prefix: &str, budget: u64, attr_ttl: Duration) -> Harness {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let counts = store.counts();
    let fs = new_fs(store.clone(), cache.path(), prefix, budget, attr_ttl);
    Harness {
        fs,
        store,
        counts,
        _cache: cache,
    }
}

fn harness() -> Harness {
    harness_with("", 1 << 30)
}

impl Harness {
    async fn put(&self, name: &str, data: &[u8]) {
        self.store
            .put(name, Bytes::copy_from_slice(data), &WriteCondition::None)
            .await
            .expect("put");
    }

    fn blob(&self, name: &str) -> Option<Vec<u8>> {
        self.store.inner().content(name).map(|b| b.to_vec())
    }

    async fn ino(&self, path: &str) -> u64 {
        let mut ino = ROOT_INO;
        for segment in path.split('/') {
            ino = self
                .fs
                .lookup(ino, OsStr::new(segment))
                .await
                .expect("lookup")
                .ino;
        }
        ino
    }

    async fn names(&self, dir: u64) -> Vec<(String, Kind)> {
        let (fh, _) = self.fs.opendir(dir).expect("opendir");
        let entries = self.read_dir_from(fh, 0).await;
        self.fs.releasedir(fh).expect("releasedir");
        entries
            .into_iter()
            .filter(|(n, _)| n != "." && n != "..")
            .collect()
    }

    /// Reads a directory handle to its end from `offset`, the way the kernel does: each call
    /// resumes after the last entry consumed (here: at most 1,000 per call).
    async fn read_dir_from(&self, fh: u64, mut offset: u64) -> Vec<(String, Kind)> {
        let mut out = Vec::new();
        loop {
            let window = self.fs.readdir(fh, offset).await.expect("readdir");
            let batch: Vec<_> = window.entries[window.start..].iter().take(1000).collect();
            if batch.is_empty() {
                return out;
            }
            offset += batch.len() as u64;
            out.extend(batch.into_iter().map(|e| (e.name.clone(), e.kind)));
        }
    }

    /// Creates `name` in the root directory: its attributes and the new handle.
    async fn create(&self, name: &str, flags: i32) -> (Stat, u64) {
        self.fs
            .create(ROOT_INO, OsStr::new(name), flags)
            .await
            .expect("create")
    }

    /// The handle of a new open of `ino`.
    async fn open(&self, ino: u64, flags: i32) -> u64 {
        self.fs.open(ino, flags).await.expect("open").fh
    }

    async fn write(&self, fh: u64, offset: u64, data: &[u8]) {
        self.fs
            .write(fh, offset, data.to_vec())
            .await
            .expect("write");
    }

    /// Renames `from` to `to`, both in the root directory.
    async fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.fs
            .rename(ROOT_INO, OsStr::new(from), ROOT_INO, OsStr::new(to), 0)
            .await
    }

    /// Flushes (uploads) and releases a handle, as a close does.
    async fn close(&self, fh: u64) {
        self.fs.flush(fh).await.expect("flush");
        self.fs.release(fh).expect("release");
    }

    /// Creates `name` in the root directory, writes `data` into it and closes it.
    async fn write_new(&self, name: &str, data: &[u8]) {
        let (_, fh) = self.create(name, libc::O_WRONLY).await;
        self.write(fh, 0, data).await;
        self.close(fh).await;
    }

    async fn read_all(&self, path: &str) -> Vec<u8> {
        let ino = self.ino(path).await;
        let fh = self.open(ino, libc::O_RDONLY).await;
        let size = self.fs.getattr(ino).await.expect("getattr").size;
        let data = self.fs.read(fh, 0, size as u32 + 10).await.expect("read");
        self.fs.release(fh).expect("release");
        data
    }
}

#[tokio::test]
async fn listing_shows_files_dirs_and_markers_and_fills_the_attr_cache() {
    let h = harness();
    h.put("a.txt", b"a").await;
    h.put("dir/b.txt", b"bb").await;
    h.store.put_dir_marker("empty").await.expect("marker");
    h.put("both", b"file").await;
    h.put("both/inner", b"x").await;
    h.put("bad//name", b"x").await;
    let names = h.names(ROOT_INO).await;
    assert_eq!(
        names,
        vec![
            ("a.txt".to_string(), Kind::File),
            ("bad".to_string(), Kind::Dir),
            ("both".to_string(), Kind::Dir),
            ("dir".to_string(), Kind::Dir),
            ("empty".to_string(), Kind::Dir),
        ]
    );
    let before = h.counts.snapshot();
    for name in ["a.txt", "both", "dir", "empty"] {
        h.fs.lookup(ROOT_INO, OsStr::new(name))
            .await
            .expect("lookup");
    }
    let after = h.counts.snapshot();
    assert_eq!(
        before.properties, after.properties,
        "lookups after a listing must be cached"
    );
    assert_eq!(before.list, after.list);
    let stat =
        h.fs.lookup(ROOT_INO, OsStr::new("a.txt"))
            .await
            .expect("lookup");
    assert_eq!(stat.size, 1);
    // The empty segment in "bad//name" is skipped, not shown as a nameless entry.
    let bad = h.ino("bad").await;
    assert!(h.names(bad).await.is_empty());
}

#[tokio::test]
async fn written_file_is_uploaded_on_flush_and_reads_back() {
    let h = harness();
    let (stat, fh) = h.create("new file #1.txt", libc::O_WRONLY).await;
    assert_eq!(
        h.names(ROOT_INO).await,
        vec![("new file #1.txt".to_string(), Kind::File)]
    );
    h.write(fh, 0, b"hello ").await;
    h.write(fh, 6, b"world").await;
    assert_eq!(
        h.blob("new file #1.txt"),
        None,
        "nothing is uploaded before close"
    );
    h.close(fh).await;
    assert_eq!(
        h.blob("new file #1.txt").as_deref(),
        Some(&b"hello world"[..])
    );
    assert_eq!(h.fs.getattr(stat.ino).await.expect("getattr").size, 11);
    assert_eq!(h.read_all("new file #1.txt").await, b"hello world");
}

#[tokio::test]
async fn append_and_truncate_keep_the_rest_of_the_content() {
    let h = harness();
    h.put("f", b"0123456789").await;
    let ino = h.ino("f").await;
    let fh = h.open(ino, libc::O_WRONLY | libc::O_APPEND).await;
    h.fs.write(fh, 10, b"AB".to_vec()).await.expect("append");
    h.close(fh).await;
    assert_eq!(h.blob("f").as_deref(), Some(&b"0123456789AB"[..]));
    h.fs.setattr_size(ino, 4, None).await.expect("truncate");
    assert_eq!(h.blob("f").as_deref(), Some(&b"0123"[..]));
    let fh =
        h.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .expect("open trunc")
            .fh;
    h.write(fh, 0, b"new").await;
    h.close(fh).await;
    assert_eq!(h.blob("f").as_deref(), Some(&b"new"[..]));
}

#[tokio::test]
async fn a_blob_changed_remotely_is_not_overwritten_and_the_data_is_kept() {
    let h = harness();
    h.put("f", b"original").await;
    let ino = h.ino("f").await;
    let fh = h.open(ino, libc::O_RDWR).await;
    h.write(fh, 0, b"mine").await;
    h.put("f", b"theirs").await;
    let err = h.fs.flush(fh).await.expect_err("conflict");
    assert_eq!(err.errno, libc::EIO);
    assert!(
        err.message.contains("changed or created remotely"),
        "{}",
        err.message
    );
    assert_eq!(h.blob("f").as_deref(), Some(&b"theirs"[..]));
    // The local copy survives the failed upload...
    let data = h.fs.read(fh, 0, 100).await.expect("read");
    assert_eq!(data, b"mineinal");
    h.fs.release(fh).expect("release");
    // ...and after the close it is saved in lost+found, while the mount shows the remote one.
    let lost = h._cache.path().join("data").join("lost+found");
    let saved: Vec<Vec<u8>> = std::fs::read_dir(&lost)
        .expect("lost+found exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_none_or(|x| x != "blobname"))
        .map(|e| std::fs::read(e.path()).expect("read saved"))
        .collect();
    assert_eq!(saved, vec![b"mineinal".to_vec()]);
    // The next open reads the remote version (no stale ETag left behind).
    assert_eq!(h.read_all("f").await, b"theirs");
    assert_eq!(
        h.fs.shutdown().await,
        0,
        "nothing left unsaved in the mount"
    );
}

#[tokio::test]
async fn a_new_file_created_remotely_meanwhile_is_listed_once_after_the_refused_upload() {
    let h = harness();
    let (_, fh) = h.create("n", libc::O_WRONLY | libc::O_EXCL).await;
    h.write(fh, 0, b"mine").await;
    h.put("n", b"theirs").await;
    assert_eq!(h.fs.flush(fh).await.expect_err("conflict").errno, libc::EIO);
    h.fs.release(fh).expect("release");
    assert_eq!(h.names(ROOT_INO).await, vec![("n".to_string(), Kind::File)]);
    assert_eq!(h.read_all("n").await, b"theirs");
}

#[tokio::test]
async fn a_file_handed_to_the_kernel_is_never_trimmed_and_idle_content_keeps_its_metadata() {
    let h = harness_with("", 8 << 20);
    let small: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 239) as u8).collect();
    h.put("a", &small).await;
    h.put("b", &vec![3u8; 20 << 20]).await;
    assert_eq!(h.read_all("a").await, small);
    let metas = std::fs::read_dir(h._cache.path().join("data"))
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "meta"))
        .count();
    assert_eq!(
        metas, 1,
        "an idle blob's reuse metadata is written when it goes idle"
    );
    let ino = h.ino("a").await;
    let opened = h.fs.open(ino, libc::O_RDONLY).await.expect("open");
    let backing = opened.local_copy.expect("complete and clean: handed out");
    // Reading a blob larger than the cache makes room, but not in the handed-out file.
    assert_eq!(h.read_all("b").await.len(), 20 << 20);
    let mut seen = vec![0u8; small.len()];
    std::os::unix::fs::FileExt::read_exact_at(&backing, &mut seen, 0).expect("read backing");
    assert!(seen == small, "the kernel's backing file lost data");
    h.fs.release(opened.fh).expect("release");
}

#[tokio::test]
async fn create_over_a_name_created_remotely_meanwhile_opens_it_instead_of_replacing_it() {
    let h = harness();
    assert!(h.fs.lookup(ROOT_INO, OsStr::new("log")).await.is_err());
    h.put("log", b"remote line\n").await;
    let (stat, fh) = h
        .create("log", libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT)
        .await;
    assert_eq!(stat.size, 12);
    h.write(fh, stat.size, b"mine\n").await;
    h.close(fh).await;
    assert_eq!(h.blob("log").as_deref(), Some(&b"remote line\nmine\n"[..]));
}

#[tokio::test]
async fn a_file_unlinked_while_open_is_not_uploaded_and_leaves_nothing_behind() {
    let h = harness();
    let (_, fh) = h.create("tmp", libc::O_RDWR).await;
    h.fs.unlink(ROOT_INO, OsStr::new("tmp"))
        .await
        .expect("unlink");
    h.write(fh, 0, b"scratch").await;
    assert_eq!(h.fs.read(fh, 0, 10).await.expect("read"), b"scratch");
    h.close(fh).await;
    assert_eq!(h.blob("tmp"), None);
    assert_eq!(h.fs.shutdown().await, 0);
    let leftovers: Vec<_> = std::fs::read_dir(h._cache.path().join("data"))
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "left in the cache: {leftovers:?}");
}

#[tokio::test]
async fn mkdir_rmdir_and_enotempty() {
    let h = harness();
    let dir = h.fs.mkdir(ROOT_INO, OsStr::new("d")).await.expect("mkdir");
    assert_eq!(dir.kind, Kind::Dir);
    assert!(h.blob("d").is_some(), "marker blob written");
    let err =
        h.fs.mkdir(ROOT_INO, OsStr::new("d"))
            .await
            .expect_err("exists");
    assert_eq!(err.errno, libc::EEXIST);
    h.put("d/x", b"1").await;
    let err =
        h.fs.rmdir(ROOT_INO, OsStr::new("d"))
            .await
            .expect_err("not empty");
    assert_eq!(err.errno, libc::ENOTEMPTY);
    h.fs.unlink(h.ino("d").await, OsStr::new("x"))
        .await
        .expect("unlink");
    h.fs.rmdir(ROOT_INO, OsStr::new("d")).await.expect("rmdir");
    assert!(h.blob("d").is_none());
    let err =
        h.fs.lookup(ROOT_INO, OsStr::new("d"))
            .await
            .expect_err("gone");
    assert_eq!(err.errno, libc::ENOENT);
}

#[tokio::test]
async fn rename_moves_files_and_directories() {
    let h = harness();
    h.put("a.txt", b"A").await;
    h.put("dir/one", b"1").await;
    h.put("dir/sub/two", b"2").await;
    h.ino("a.txt").await;
    h.rename("a.txt", "b.txt").await.expect("rename file");
    assert_eq!(h.blob("a.txt"), None);
    assert_eq!(h.blob("b.txt").as_deref(), Some(&b"A"[..]));
    h.ino("dir").await;
    h.rename("dir", "moved").await.expect("rename dir");
    assert_eq!(h.blob("moved/one").as_deref(), Some(&b"1"[..]));
    assert_eq!(h.blob("moved/sub/two").as_deref(), Some(&b"2"[..]));
    assert_eq!(h.blob("dir/one"), None);
    assert_eq!(h.read_all("moved/sub/two").await, b"2");
    let err = h.rename("b.txt", "moved").await.expect_err("file over dir");
    assert_eq!(err.errno, libc::EISDIR);
}

#[tokio::test]
async fn random_read_of_a_large_blob_fetches_only_what_it_touches() {
    let h = harness();
    let data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    h.put("big", &data).await;
    let ino = h.ino("big").await;
    let fh = h.open(ino, libc::O_RDONLY).await;
    // Let the open's head prefetch finish, then count only what the random reads cost.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = h.counts.get_bytes.load(Ordering::Relaxed);
    for offset in [40u64 << 20, 10 << 20, 60 << 20, 33 << 20] {
        let got = h.fs.read(fh, offset + 7, 4096).await.expect("read");
        assert_eq!(
            got,
            &data[(offset + 7) as usize..(offset + 7) as usize + 4096]
        );
    }
    let fetched = h.counts.get_bytes.load(Ordering::Relaxed) - before;
    assert!(
        fetched <= 4 << 20,
        "fetched {fetched} bytes for 4 random 4 KiB reads"
    );
    // A read straddling a chunk boundary and the last partial chunk are byte-exact.
    let boundary = (1u64 << 20) * 5 - 10;
    assert_eq!(
        h.fs.read(fh, boundary, 20).await.expect("read"),
        &data[boundary as usize..boundary as usize + 20]
    );
    let tail = data.len() as u64 - 5;
    assert_eq!(
        h.fs.read(fh, tail, 100).await.expect("read"),
        &data[tail as usize..]
    );
    assert!(h
        .fs
        .read(fh, data.len() as u64 + 1, 10)
        .await
        .expect("read")
        .is_empty());
    h.fs.release(fh).expect("release");
}

#[tokio::test]
async fn a_blob_replaced_mid_read_fails_with_estale_not_mixed_content() {
    let h = harness();
    h.put("f", &vec![1u8; 16 << 20]).await;
    let ino = h.ino("f").await;
    let fh = h.open(ino, libc::O_RDONLY).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.put("f", &vec![2u8; 16 << 20]).await;
    // The head was prefetched at open: still version 1.
    assert_eq!(h.fs.read(fh, 0, 16).await.expect("read"), vec![1u8; 16]);
    // A part not fetched yet would come from version 2: refused rather than mixed.
    let err = h.fs.read(fh, 12 << 20, 16).await.expect_err("stale");
    assert_eq!(err.errno, libc::ESTALE, "{}", err.message);
    h.fs.release(fh).expect("release");
}

#[tokio::test]
async fn prefix_mounts_see_only_their_subtree() {
    let h = harness_with("team/data", 1 << 30);
    h.put("team/data/x.csv", b"a,b\n").await;
    h.put("team/other.txt", b"no").await;
    assert_eq!(
        h.names(ROOT_INO).await,
        vec![("x.csv".to_string(), Kind::File)]
    );
    h.write_new("y.csv", b"1").await;
    assert_eq!(h.blob("team/data/y.csv").as_deref(), Some(&b"1"[..]));
}

#[tokio::test]
async fn large_files_are_uploaded_in_blocks() {
    let h = harness();
    let (_, fh) = h.create("big", libc::O_WRONLY).await;
    let data: Vec<u8> = (0..(40u32 << 20)).map(|i| (i % 253) as u8).collect();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        h.write(fh, (i as u64) << 20, piece).await;
    }
    let puts_before = h.counts.snapshot().put;
    h.close(fh).await;
    let puts = h.counts.snapshot().put - puts_before;
    assert_eq!(puts, 5 + 1, "5 blocks of 8 MiB and one block list");
    assert_eq!(h.blob("big").map(|b| b.len()), Some(data.len()));
    assert!(h.blob("big").is_some_and(|b| b == data));
}

#[tokio::test]
async fn cached_content_is_reused_by_the_next_mount_while_the_etag_matches() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let data: Vec<u8> = (0..(3u32 << 20) + 17).map(|i| (i % 241) as u8).collect();
    store
        .put("f.bin", Bytes::from(data.clone()), &WriteCondition::None)
        .await
        .expect("put");
    store
        .put("g.bin", Bytes::from_static(b"old"), &WriteCondition::None)
        .await
        .expect("put");
    let mount = || {
        new_fs(
            store.clone(),
            cache.path(),
            "",
            1 << 30,
            Duration::from_secs(60),
        )
    };
    let first = mount();
    assert_eq!(read_whole(&first, "f.bin", 4 << 20).await, data);
    assert_eq!(read_whole(&first, "g.bin", 10).await, b"old");
    first.shutdown().await;
    drop(first);

    store
        .put("g.bin", Bytes::from_static(b"new!"), &WriteCondition::None)
        .await
        .expect("put");
    let second = mount();
    let before = store.counts().get_bytes.load(Ordering::Relaxed);
    assert_eq!(read_whole(&second, "f.bin", 4 << 20).await, data);
    assert_eq!(
        store.counts().get_bytes.load(Ordering::Relaxed),
        before,
        "an unchanged blob is served from the previous mount's cache"
    );
    assert_eq!(
        read_whole(&second, "g.bin", 10).await,
        b"new!",
        "a changed blob is fetched again"
    );
}

async fn read_whole(fs: &Fs, name: &str, len: u32) -> Vec<u8> {
    let ino = fs
        .lookup(ROOT_INO, OsStr::new(name))
        .await
        .expect("lookup")
        .ino;
    let fh = fs.open(ino, libc::O_RDONLY).await.expect("open").fh;
    let got = fs.read(fh, 0, len).await.expect("read");
    fs.release(fh).expect("release");
    got
}

#[tokio::test]
async fn only_complete_clean_read_only_opens_offer_the_local_copy_and_keep_cache() {
    // TTL 0: every open sees the current remote version.
    let h = harness_with_ttl("", 1 << 30, Duration::ZERO);
    h.put("f", &vec![7u8; (2 << 20) + 5]).await;
    let ino = h.ino("f").await;
    let first = h.fs.open(ino, libc::O_RDONLY).await.expect("open");
    assert!(!first.keep_cache, "nothing cached in the kernel yet");
    assert!(first.local_copy.is_none(), "not downloaded yet");
    h.fs.read(first.fh, 0, 3 << 20).await.expect("read");
    let second = h.fs.open(ino, libc::O_RDONLY).await.expect("open");
    assert!(second.keep_cache, "same version as the first open");
    assert!(second.local_copy.is_some(), "complete and clean");
    let writer = h.fs.open(ino, libc::O_RDWR).await.expect("open rw");
    assert!(writer.local_copy.is_none(), "writers go through the daemon");
    for fh in [first.fh, second.fh, writer.fh] {
        h.fs.release(fh).expect("release");
    }
    h.put("f", b"changed").await;
    let third = h.fs.open(ino, libc::O_RDONLY).await.expect("open");
    assert!(
        !third.keep_cache,
        "a new remote version drops the kernel's pages"
    );
    h.fs.release(third.fh).expect("release");
}

#[tokio::test]
async fn large_directories_stream_page_by_page_and_rewind() {
    let h = harness();
    let mut expected: Vec<String> = (0..12_003).map(|i| format!("f{i:05}")).collect();
    for name in &expected {
        h.put(&format!("big/{name}"), b"").await;
    }
    // A file and a directory of one name, on both sides of the first page boundary.
    h.put("big/f04999.x", b"").await;
    h.put("big/f04999/inner", b"").await;
    expected.push("f04999.x".into());
    expected.sort();
    let dir = h.ino("big").await;
    let (fh, _) = h.fs.opendir(dir).expect("opendir");
    let all = h.read_dir_from(fh, 0).await;
    let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let mut want: Vec<String> = [".", ".."]
        .iter()
        .map(|s| s.to_string())
        .chain(expected.clone())
        .collect();
    want.sort();
    assert_eq!(sorted, want, "every name exactly once");
    let kind_of = |name: &str| all.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
    assert_eq!(
        kind_of("f04999"),
        Some(Kind::Dir),
        "the directory wins over the file"
    );
    // A repeated offset inside the current window and a rewind both give the same entries.
    let again = h.read_dir_from(fh, names.len() as u64 - 5).await;
    assert_eq!(again, all[all.len() - 5..].to_vec());
    let rewound = h.read_dir_from(fh, 3).await;
    assert_eq!(rewound, all[3..].to_vec());
    h.fs.releasedir(fh).expect("releasedir");
}

#[tokio::test]
async fn empty_and_single_entry_directories() {
    let h = harness();
    h.store.put_dir_marker("empty").await.expect("marker");
    h.put("one/only.txt", b"1").await;
    assert!(h.names(h.ino("empty").await).await.is_empty());
    assert_eq!(
        h.names(h.ino("one").await).await,
        vec![("only.txt".to_string(), Kind::File)]
    );
}

#[tokio::test]
async fn a_blob_larger_than_the_cache_streams_within_the_budget() {
    let budget = 16u64 << 20;
    let h = harness_with("", budget);
    h.put("small", &[5u8; 3 << 20]).await;
    assert_eq!(h.read_all("small").await.len(), 3 << 20);
    let data: Vec<u8> = (0..(64u32 << 20)).map(|i| (i / 4096 % 251) as u8).collect();
    h.put("big", &data).await;
    let ino = h.ino("big").await;
    let fh = h.open(ino, libc::O_RDONLY).await;
    let mut peak = 0;
    let mut offset = 0u64;
    while offset < data.len() as u64 {
        let got = h.fs.read(fh, offset, 128 << 10).await.expect("read");
        assert_eq!(
            got,
            &data[offset as usize..offset as usize + got.len()],
            "at {offset}"
        );
        offset += got.len() as u64;
        peak = peak.max(h.fs.cache_disk_usage());
    }
    h.fs.release(fh).expect("release");
    assert!(
        peak <= budget + (8 << 20),
        "cache grew to {peak} bytes with a {budget}-byte budget"
    );
    // The idle small blob was evicted first: reading it again downloads it again.
    let before = h.counts.get_bytes.load(Ordering::Relaxed);
    assert_eq!(h.read_all("small").await.len(), 3 << 20);
    assert!(h.counts.get_bytes.load(Ordering::Relaxed) - before >= 3 << 20);
}
