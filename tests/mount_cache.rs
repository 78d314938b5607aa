//! The content cache through a real mount (issue #3, "reads at wire speed"): reads are
//! byte-exact wherever they fall against the 1 MiB chunks and the first (8 MiB) requests,
//! concurrent readers share one download, random reads fetch little, the cache stays within
//! `--cache-size`, survives a remount while the blob is unchanged, never mixes two versions of
//! a blob, and on a full cache disk makes room or fails with ENOSPC, never with wrong bytes.
//!
//! Request costs are read from the daemon's own counters (SIGUSR1, see `counts`).

mod common;
mod counts;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::{assert_bytes_eq, python3, random_bytes, sha256_hex, Mount, TestContainer};
use counts::{measure, settled_counts};

const MIB: u64 = 1 << 20;

/// `pread` of up to `len` bytes at `offset`, looping over short reads until EOF.
fn pread_full(f: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

fn fadvise(f: &File, advice: libc::c_int) {
    // SAFETY: posix_fadvise on a valid open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, advice) };
    assert_eq!(rc, 0, "posix_fadvise({advice}) failed: errno {rc}");
}

/// Drops the kernel's page cache of `path` (a file in the mount), so that the next read has to
/// ask the daemon: what the daemon's cache holds is what these tests are about.
fn drop_page_cache(path: &Path) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    fadvise(&f, libc::POSIX_FADV_DONTNEED);
}

/// Bytes the files under `dir` occupy on disk (st_blocks * 512; sparse files count only what
/// is present), recursively.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            total += disk_usage(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// Mounts `c` with the default options, or with `--no-passthrough` unless `passthrough`.
fn mount_with_passthrough(c: &TestContainer, passthrough: bool) -> Mount {
    let mut builder = Mount::builder(c);
    if !passthrough {
        builder = builder.arg("--no-passthrough");
    }
    builder.mount()
}

/// Reads at 1 MiB chunk and 8 MiB request boundaries, the last partial chunk, and past the
/// end of a file of `data.len()` = 8 MiB + 12345 bytes; each must be byte-exact.
fn check_edge_reads(f: &File, data: &[u8], what: &str) {
    let size = data.len() as u64;
    assert_eq!(f.metadata().unwrap().len(), size, "{what}: size");
    // No kernel read-ahead: each pread reaches the daemon as (page-aligned) itself.
    fadvise(f, libc::POSIX_FADV_RANDOM);
    // (offset, length): straddling the last chunk boundary first (its chunk is not part of the
    // open's prefetch of the head), then 1 MiB boundaries, whole chunks, the last partial
    // chunk, and reads that run past the end.
    let reads: &[(u64, usize)] = &[
        (8 * MIB - 5000, 10_000),
        (8 * MIB - 1, 2),
        (8 * MIB, 12345),
        (8 * MIB + 12000, 1000),
        (size - 1, 1),
        (size - 100, 4096),
        (MIB - 100, 200),
        (MIB - 1, 2),
        (MIB, 1),
        (2 * MIB - 4096, 8192),
        (3 * MIB, MIB as usize),
        (3 * MIB + 1, MIB as usize),
        (4 * MIB - 7, 3 * MIB as usize + 14),
        (0, 1),
        (0, size as usize + 100),
    ];
    for &(offset, len) in reads {
        let got = pread_full(f, offset, len)
            .unwrap_or_else(|e| panic!("{what}: pread of {len} bytes at {offset}: {e}"));
        let end = (offset + len as u64).min(size) as usize;
        assert_bytes_eq(
            &got,
            &data[offset as usize..end],
            &format!("{what}: pread of {len} bytes at {offset}"),
        );
    }
    // At and past the end of the file: 0 bytes, no error.
    for offset in [size, size + 1, size + 4096, 9 * MIB, 100 * MIB, 1 << 40] {
        let mut buf = [0u8; 4096];
        let n = f
            .read_at(&mut buf, offset)
            .unwrap_or_else(|e| panic!("{what}: pread at {offset} (past EOF {size}): {e}"));
        assert_eq!(n, 0, "{what}: pread at {offset} past EOF {size}");
    }
}

#[test]
fn reads_at_chunk_boundaries_and_past_eof_are_exact() {
    const SIZE: u64 = 8 * MIB + 12345;
    let c = TestContainer::new();
    let data = random_bytes(SIZE as usize, 0xb0da);
    c.put("edges.bin", &data);
    for passthrough in [true, false] {
        let m = mount_with_passthrough(&c, passthrough);
        let mode = if passthrough {
            "default"
        } else {
            "--no-passthrough"
        };
        let path = m.join("edges.bin");
        // First open: the reads fetch their chunks.
        let f = File::open(&path).unwrap();
        check_edge_reads(&f, &data, &format!("{mode}, first open"));
        drop(f);
        // The whole file through a fresh handle and a plain read loop.
        assert_bytes_eq(
            &fs::read(&path).unwrap(),
            &data,
            &format!("{mode}: whole file"),
        );
        // Now complete in the cache: served from it (passthrough by default, as root).
        drop_page_cache(&path);
        let (f, cost) = measure(&m, || {
            let f = File::open(&path).unwrap();
            check_edge_reads(&f, &data, &format!("{mode}, cached"));
            f
        });
        drop(f);
        assert_eq!(
            cost.get_bytes, 0,
            "{mode}: reads of a cached file: {cost:?}"
        );
        m.unmount();
    }
}

#[test]
fn concurrent_readers_of_one_file_share_one_download() {
    const SIZE: usize = 32 << 20;
    let c = TestContainer::new();
    let data = Arc::new(random_bytes(SIZE, 0xc0c0));
    c.put("shared.bin", &data);
    let m = Mount::new(&c);
    let path = m.join("shared.bin");

    let read_sizes = [
        4096usize,
        65_536,
        131_072,
        1 << 20,
        (3 << 20) + 17,
        777,
        12_345,
        8 << 20,
    ];
    let (elapsed, cost) = measure(&m, || {
        let started = Instant::now();
        let barrier = Arc::new(std::sync::Barrier::new(read_sizes.len()));
        let threads: Vec<_> = read_sizes
            .iter()
            .enumerate()
            .map(|(i, &read_size)| {
                let (path, data, barrier) = (path.clone(), Arc::clone(&data), Arc::clone(&barrier));
                // Each reader starts somewhere else (so the kernel's page cache cannot be what
                // shares the work), reads to the end, then wraps around to where it started.
                let first = (i * SIZE / read_sizes.len() + i * 1001) % SIZE;
                std::thread::spawn(move || {
                    let f = File::open(&path).unwrap();
                    barrier.wait();
                    let mut buf = vec![0u8; read_size];
                    let mut total = 0usize;
                    for (from, to) in [(first, SIZE), (0, first)] {
                        let mut pos = from;
                        while pos < to {
                            let want = read_size.min(to - pos);
                            let n = f.read_at(&mut buf[..want], pos as u64).unwrap_or_else(|e| {
                                panic!("reader {i} ({read_size} B reads): read at {pos}: {e}")
                            });
                            assert!(n > 0, "reader {i}: unexpected EOF at {pos}");
                            assert_bytes_eq(
                                &buf[..n],
                                &data[pos..pos + n],
                                &format!("reader {i} ({read_size} B reads): {n} bytes at {pos}"),
                            );
                            pos += n;
                            total += n;
                        }
                    }
                    assert_eq!(total, SIZE, "reader {i}: total bytes read");
                    // And nothing past the end.
                    assert_eq!(f.read_at(&mut buf, SIZE as u64).unwrap(), 0);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a reader thread failed");
        }
        started.elapsed()
    });
    eprintln!("8 concurrent readers of 32 MiB: {elapsed:?}, requests {cost:?}");
    assert!(
        cost.get_bytes as f64 <= 1.25 * SIZE as f64,
        "8 readers together downloaded {} bytes of a {SIZE}-byte blob (at most 1.25x allowed): {cost:?}",
        cost.get_bytes
    );
    assert!(
        cost.get_bytes >= SIZE as u64,
        "the whole blob was read, so it must have been downloaded: {cost:?}"
    );
    // Ranged GETs of up to 8 MiB: a 32 MiB download is not thousands of small requests.
    assert!(cost.get <= 64, "too many GETs for 32 MiB: {cost:?}");
    m.unmount();
}

#[test]
fn random_small_reads_of_a_large_blob_download_little() {
    const SIZE: usize = 256 << 20;
    let c = TestContainer::new();
    let data = random_bytes(SIZE, 0x256);
    c.put("huge.bin", &data);
    let m = Mount::new(&c);
    let path = m.join("huge.bin");

    // Ten seeded offsets spread over the blob (not 4 KiB aligned).
    let offsets: Vec<u64> = random_bytes(80, 0x5eed)
        .chunks(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) % (SIZE as u64 - 4096))
        .collect();
    let (f, cost) = measure(&m, || {
        let f = File::open(&path).unwrap();
        for &offset in &offsets {
            let got = pread_full(&f, offset, 4096)
                .unwrap_or_else(|e| panic!("pread of 4 KiB at {offset}: {e}"));
            assert_bytes_eq(
                &got,
                &data[offset as usize..offset as usize + 4096],
                &format!("4 KiB at {offset}"),
            );
        }
        f
    });
    drop(f);
    eprintln!("10 random 4 KiB reads of 256 MiB: requests {cost:?}");
    assert!(
        cost.get_bytes < 64 * MIB,
        "10 random 4 KiB reads of a 256 MiB blob downloaded {} MiB (less than 64 MiB expected): {cost:?}",
        cost.get_bytes / MIB
    );
    assert!(
        cost.get_bytes >= 10 * 4096,
        "the reads must have been downloaded: {cost:?}"
    );
    m.unmount();
}

#[test]
fn a_small_cache_evicts_idle_blobs_and_still_reads_larger_ones() {
    const BLOB: usize = 6 << 20;
    const BUDGET: u64 = 8 * MIB;
    let c = TestContainer::new();
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(BLOB, 0xe71c + i)).collect();
    for (i, data) in blobs.iter().enumerate() {
        c.put(&format!("b{i}.bin"), data);
    }
    let large = random_bytes(40 << 20, 0x40);
    c.put("large.bin", &large);
    let m = Mount::builder(&c).args(["--cache-size", "8M"]).mount();

    for (i, data) in blobs.iter().enumerate() {
        let name = format!("b{i}.bin");
        let (got, cost) = measure(&m, || fs::read(m.join(&name)).unwrap());
        assert_bytes_eq(&got, data, &name);
        assert!(
            cost.get_bytes >= BLOB as u64,
            "first read of {name} must download it: {cost:?}"
        );
    }
    let usage = disk_usage(m.cache_dir());
    eprintln!("cache usage after three 6 MiB blobs with an 8 MiB budget: {usage} bytes");
    // The budget, plus at most the one blob being brought in, plus a little for lock and
    // metadata files.
    assert!(
        usage <= BUDGET + BLOB as u64 + 256 * 1024,
        "the cache uses {usage} bytes on disk with --cache-size 8M after reading 3 x 6 MiB"
    );

    // b0 was evicted to make room: reading it again downloads it again. (The kernel's page
    // cache is dropped first: it is the daemon's cache that is being tested.)
    // (Dropping it opens the file, which starts the download: measure it too.)
    let (got, cost) = measure(&m, || {
        drop_page_cache(&m.join("b0.bin"));
        fs::read(m.join("b0.bin")).unwrap()
    });
    assert_bytes_eq(&got, &blobs[0], "b0.bin read again");
    assert!(
        cost.get_bytes >= BLOB as u64,
        "b0.bin should have been evicted and downloaded again: {cost:?}"
    );

    // A blob five times the cache still reads byte-exact, and the cache stays bounded.
    let (got, cost) = measure(&m, || fs::read(m.join("large.bin")).unwrap());
    assert_bytes_eq(&got, &large, "40 MiB blob through an 8 MiB cache");
    assert!(cost.get_bytes >= large.len() as u64, "{cost:?}");
    let usage = disk_usage(m.cache_dir());
    eprintln!("cache usage after reading 40 MiB with an 8 MiB budget: {usage} bytes");
    assert!(
        usage <= 2 * BUDGET + 256 * 1024,
        "the cache uses {usage} bytes on disk with --cache-size 8M after a 40 MiB read"
    );
    m.unmount();
}

/// A tmpfs of `mib` MiB on a fresh directory: a cache disk that fills up. Unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u64) -> Self {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs on {}",
            dir.path().display()
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_cache_disk_makes_room_or_fails_with_enospc_never_wrong_bytes() {
    let c = TestContainer::new();
    let a = random_bytes(12 << 20, 0xf011);
    let b = random_bytes(12 << 20, 0xf012);
    let big = random_bytes(40 << 20, 0xf013);
    c.put("a.bin", &a);
    c.put("b.bin", &b);
    c.put("big.bin", &big);
    // A 24 MiB disk under a 1 GiB budget: the disk fills long before the budget says so.
    let disk = SmallDisk::new(24);
    let m = Mount::builder(&c)
        .cache_dir(disk.path())
        .args(["--cache-size", "1G"])
        .mount();

    // a fits; b does only once a (closed, idle) is evicted to make room.
    assert_bytes_eq(&fs::read(m.join("a.bin")).unwrap(), &a, "a.bin");
    drop_page_cache(&m.join("a.bin"));
    assert_bytes_eq(
        &fs::read(m.join("b.bin")).unwrap(),
        &b,
        "b.bin on a full disk",
    );
    // A blob larger than the whole disk: chunks already read make room. Each read either
    // returns the right bytes or fails with ENOSPC, never returns wrong ones.
    let f = File::open(m.join("big.bin")).unwrap();
    let mut offset = 0usize;
    let mut enospc = 0;
    while offset < big.len() {
        match pread_full(&f, offset as u64, MIB as usize) {
            Ok(got) => {
                let end = offset + got.len();
                assert_bytes_eq(&got, &big[offset..end], &format!("big.bin at {offset}"));
                offset = end;
            }
            Err(err) => {
                assert_eq!(
                    err.raw_os_error(),
                    Some(libc::ENOSPC),
                    "big.bin at {offset}: {err}"
                );
                enospc += 1;
                assert!(
                    enospc < 100,
                    "big.bin keeps failing with ENOSPC at {offset}"
                );
            }
        }
    }
    drop(f);
    assert!(
        m.log().contains("the cache disk is full"),
        "no log line about the full cache disk:\n{}",
        m.log()
    );

    // Writing more than the disk can hold, even with everything evicted: ENOSPC, not a
    // silently short file.
    let err = fs::write(m.join("huge.out"), vec![7u8; 32 << 20]).expect_err("32 MiB on 24 MiB");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(
        m.log().contains("No space left on device"),
        "no log line naming the ENOSPC:\n{}",
        m.log()
    );
    m.unmount();
    drop(disk);
}

#[test]
fn cached_content_is_reused_after_a_remount() {
    const SIZE: usize = 10 << 20;
    let c = TestContainer::new();
    let data = random_bytes(SIZE, 0x1e05e);
    c.put("keep.bin", &data);
    let cache = tempfile::TempDir::new().unwrap();

    let m = Mount::builder(&c).cache_dir(cache.path()).mount();
    let (got, cost) = measure(&m, || fs::read(m.join("keep.bin")).unwrap());
    assert_bytes_eq(&got, &data, "first mount");
    assert!(cost.get_bytes >= SIZE as u64, "{cost:?}");
    m.unmount();

    let m = Mount::builder(&c).cache_dir(cache.path()).mount();
    let (got, cost) = measure(&m, || fs::read(m.join("keep.bin")).unwrap());
    assert_bytes_eq(&got, &data, "second mount, same cache dir");
    assert_eq!(
        cost.get_bytes, 0,
        "the unchanged blob was cached by the previous mount: {cost:?}"
    );
    assert_eq!(cost.get, 0, "{cost:?}");
    m.unmount();
}

#[test]
fn a_blob_changed_between_mounts_is_downloaded_again() {
    const SIZE: usize = 10 << 20;
    let c = TestContainer::new();
    let old = random_bytes(SIZE, 0x01d);
    c.put("changes.bin", &old);
    let cache = tempfile::TempDir::new().unwrap();

    let m = Mount::builder(&c).cache_dir(cache.path()).mount();
    assert_bytes_eq(&fs::read(m.join("changes.bin")).unwrap(), &old, "old");
    m.unmount();

    // Same size, different bytes: only the ETag tells the versions apart.
    let new = random_bytes(SIZE, 0x0e3);
    c.put("changes.bin", &new);

    let m = Mount::builder(&c).cache_dir(cache.path()).mount();
    let (got, cost) = measure(&m, || fs::read(m.join("changes.bin")).unwrap());
    assert_bytes_eq(&got, &new, "the new version after a remount");
    assert!(
        cost.get_bytes >= SIZE as u64,
        "the changed blob must be downloaded again: {cost:?}"
    );
    m.unmount();
}

#[test]
fn a_blob_replaced_while_open_fails_with_estale_never_mixing_versions() {
    const SIZE: usize = 32 << 20;
    let c = TestContainer::new();
    let old = random_bytes(SIZE, 0x57a1e);
    c.put("moving.bin", &old);
    let m = Mount::builder(&c).args(["--attr-ttl", "0"]).mount();
    let path = m.join("moving.bin");

    let f = File::open(&path).unwrap();
    fadvise(&f, libc::POSIX_FADV_RANDOM);
    let head = pread_full(&f, 0, 4096).unwrap();
    assert_bytes_eq(&head, &old[..4096], "first 4 KiB");
    let before = settled_counts(&m);
    assert!(
        before.get_bytes < 24 * MIB,
        "precondition: offset 24 MiB must not be cached yet (the open and the first read \
         fetched {} bytes)",
        before.get_bytes
    );

    let new = random_bytes(30 * MIB as usize + 123, 0x2e3);
    c.put("moving.bin", &new);

    let at = 24 * MIB;
    match pread_full(&f, at, 4096) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::ESTALE),
            "reading a part not cached yet of a blob replaced since the open: {e}"
        ),
        Ok(got) => {
            let what = if got == new[at as usize..at as usize + got.len()] {
                "the NEW version's bytes"
            } else if got == old[at as usize..at as usize + got.len()] {
                "the old version's bytes"
            } else {
                "bytes of neither version"
            };
            panic!(
                "expected ESTALE at offset {at} after the blob was replaced, got {} bytes: {what}",
                got.len()
            );
        }
    }
    // What is cached of the old version is still served, never the new bytes.
    match pread_full(&f, 0, 4096) {
        Ok(got) => assert_bytes_eq(&got, &old[..4096], "the cached head after the change"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}"),
    }
    drop(f);

    // A new open sees the new version, whole.
    assert_eq!(fs::metadata(&path).unwrap().len(), new.len() as u64);
    assert_bytes_eq(
        &fs::read(&path).unwrap(),
        &new,
        "re-opened after the change",
    );
    m.unmount();
}

#[test]
fn a_cached_file_reopened_reads_exact_and_mmaps() {
    const SIZE: usize = 16 << 20;
    let c = TestContainer::new();
    let data = random_bytes(SIZE, 0x3a9);
    c.put("dir/mapped.bin", &data);
    // Both ways a fully cached file is served: FUSE passthrough (the default; the kernel reads
    // the cache file itself, as we are root) and through the daemon.
    for passthrough in [true, false] {
        let m = mount_with_passthrough(&c, passthrough);
        let mode = if passthrough {
            "passthrough"
        } else {
            "--no-passthrough"
        };
        let path = m.join("dir/mapped.bin");

        // First open: downloaded through the daemon, now complete in the cache.
        assert_bytes_eq(
            &fs::read(&path).unwrap(),
            &data,
            &format!("{mode}: first read"),
        );
        // Reopened read-only: served from the cache.
        let (got, cost) = measure(&m, || fs::read(&path).unwrap());
        assert_bytes_eq(&got, &data, &format!("{mode}: second open"));
        assert_eq!(
            cost.get_bytes, 0,
            "{mode}: the file is fully cached: {cost:?}"
        );

        // mmap through the mount, from another process.
        let (start, end) = (5 * MIB as usize + 3, 9 * MIB as usize + 100);
        let script = r#"
import hashlib, mmap, sys
path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    print(len(m))
    print(hashlib.sha256(m[start:end]).hexdigest())
    print(m[0:16].hex(), m[len(m) - 16:].hex())
    print(hashlib.sha256(m[:]).hexdigest())
    m.close()
"#;
        let args = [
            path.clone().into_os_string(),
            start.to_string().into(),
            end.to_string().into(),
        ];
        let (stdout, cost) = measure(&m, || {
            python3(script, &args, &format!("{mode}: python3 mmap"))
        });
        let lines: Vec<&str> = stdout.lines().collect();
        let expected = [
            SIZE.to_string(),
            sha256_hex(&data[start..end]),
            format!(
                "{} {}",
                hex::encode(&data[..16]),
                hex::encode(&data[SIZE - 16..])
            ),
            sha256_hex(&data),
        ];
        assert_eq!(lines, expected, "{mode}: mmap of the cached file");
        assert_eq!(
            cost.get_bytes, 0,
            "{mode}: mmap of a fully cached file: {cost:?}"
        );
        if passthrough {
            eprintln!(
                "kernel passthrough offered: {}",
                m.log().contains("FUSE passthrough enabled")
            );
        }
        m.unmount();
    }
}

#[test]
fn a_reader_sees_bytes_another_handle_appends() {
    let c = TestContainer::new();
    let mut expected_blobs = Vec::new();
    for (name, cache_first) in [("fresh.log", false), ("cached.log", true)] {
        let old: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{name} line {i:05}\n").into_bytes())
            .collect();
        c.put(name, &old);
        expected_blobs.push((name, old, cache_first));
    }
    let m = Mount::new(&c);
    for (name, old, cache_first) in expected_blobs {
        let path = m.join(name);
        if cache_first {
            // Fully cached and clean: the reader below may be a passthrough open.
            assert_bytes_eq(&fs::read(&path).unwrap(), &old, name);
        }
        let mut reader = File::open(&path).unwrap();
        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).unwrap();
        assert_bytes_eq(&seen, &old, &format!("{name}: before the append"));

        let added = format!("{name}: appended while a reader is open\n").into_bytes();
        let mut writer = OpenOptions::new().append(true).open(&path).unwrap();
        writer.write_all(&added).unwrap();

        // The reader, positioned at the old end, reads the new bytes.
        let mut more = Vec::new();
        reader.read_to_end(&mut more).unwrap();
        assert_bytes_eq(&more, &added, &format!("{name}: new bytes via the reader"));
        assert_eq!(
            reader.metadata().unwrap().len(),
            (old.len() + added.len()) as u64,
            "{name}: size seen by the reader"
        );
        writer.flush().unwrap();
        drop(writer); // close: uploads
        let mut both = old.clone();
        both.extend_from_slice(&added);
        assert_bytes_eq(
            &pread_full(&reader, 0, both.len() + 10).unwrap(),
            &both,
            &format!("{name}: the whole file via the reader after the writer closed"),
        );
        drop(reader);
        assert_bytes_eq(&c.get(name), &both, &format!("{name}: the blob"));
        assert_bytes_eq(
            &fs::read(&path).unwrap(),
            &both,
            &format!("{name}: reopened"),
        );
    }
    m.unmount();
}
