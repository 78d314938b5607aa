//! Metadata through a real mount (issue #4, "metadata at scale"): exact listings of large
//! directories streamed page by page, `ls -l`, `find` and `os.walk` answered from what the
//! listing returned (no per-file properties requests), the attribute and negative caches and
//! their TTLs, changes made through the mount visible at once, and the "directory wins" rule.
//!
//! Request costs are read from the daemon's own counters (SIGUSR1, see `counts`).

mod common;
mod counts;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{assert_names_eq, python3, sorted_names, strings, Mount, TestContainer};
use counts::{measure, Counts, CountsExt};

/// Entries per List Blobs page (`src/fs/dir.rs`).
const PAGE: usize = 5000;

/// `count` empty blobs `dir/f00000`, `dir/f00001`, ...; returns their file names, sorted.
fn put_numbered(c: &TestContainer, dir: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("f{i:05}")).collect();
    c.put_many(
        names
            .iter()
            .map(|n| (format!("{dir}/{n}"), Bytes::new()))
            .collect(),
    );
    names
}

#[track_caller]
fn assert_enoent(path: &Path, what: &str) {
    match fs::metadata(path) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::ENOENT),
            "{what}: stat {}: {e}",
            path.display()
        ),
        Ok(meta) => panic!(
            "{what}: stat {} succeeded (size {}), expected ENOENT",
            path.display(),
            meta.len()
        ),
    }
}

/// For each entry named `name` that read_dir lists in `dir`: whether it is a directory.
fn entries_are_dirs(dir: &Path, name: &str) -> Vec<bool> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() == name)
        .map(|e| e.file_type().unwrap().is_dir())
        .collect()
}

/// Runs `sh -c script` (with `LC_ALL=C`) and returns its stdout; panics unless it succeeds.
fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("LC_ALL", "C")
        .output()
        .expect("cannot run sh");
    assert!(
        out.status.success(),
        "`{script}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Single-quotes a path for `sh`.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn listings_of_0_1_5001_and_20000_entries_are_exact() {
    let c = TestContainer::new();
    c.put_dir_marker("empty");
    c.put("one/only.txt", b"1");
    // 5,001 entries: 5,000 files `p-NNNNN` and `p`, which is both a blob and a prefix. The
    // listing has the blob `five/p` first on page 1 and the prefix `five/p/` last on page 2
    // ('-' sorts before '/'): `p` must still be listed once, as a directory (the directory
    // wins, even across pages).
    let mut five: Vec<String> = (0..PAGE).map(|i| format!("p-{i:05}")).collect();
    c.put_many(
        five.iter()
            .map(|n| (format!("five/{n}"), Bytes::new()))
            .chain([
                ("five/p".to_string(), Bytes::from_static(b"blob five/p")),
                ("five/p/q".to_string(), Bytes::from_static(b"blob five/p/q")),
            ])
            .collect(),
    );
    five.push("p".to_string());
    five.sort();
    let twenty = put_numbered(&c, "twenty", 4 * PAGE);
    let m = Mount::new(&c);

    let started = Instant::now();
    let (listed, cost) = measure(&m, || {
        ["", "empty", "one", "five", "twenty"].map(|dir| {
            let path = m.join(dir);
            assert!(
                fs::metadata(&path).unwrap().is_dir(),
                "{dir} is a directory"
            );
            sorted_names(&path)
        })
    });
    eprintln!(
        "read_dir of 5 directories: {:?}, requests {cost:?}",
        started.elapsed()
    );
    let [root, empty, one, five_listed, twenty_listed] = listed;
    assert_eq!(root, strings(&["empty", "five", "one", "twenty"]));
    assert_eq!(empty, Vec::<String>::new());
    assert_eq!(one, strings(&["only.txt"]));
    assert_names_eq(&five_listed, &five, "five");
    assert_names_eq(&twenty_listed, &twenty, "twenty");
    // One List Blobs request per page of 5,000 and nothing else: the root, empty and one
    // (a page each), five (2 pages) and twenty (4), whether a first page was fetched ahead
    // of its directory's opening (src/fs/dir_prefetch.rs) or not.
    assert_eq!(cost.list, 3 + 2 + 4, "list requests, {cost:?}");
    assert_eq!(cost.properties, 0, "{cost:?}");
    assert_eq!(cost.get, 0, "{cost:?}");
    for entry in fs::read_dir(m.join("twenty")).unwrap().take(100) {
        assert!(entry.unwrap().file_type().unwrap().is_file());
    }
    let p_entries = entries_are_dirs(&m.join("five"), "p");
    assert_eq!(p_entries, vec![true], "entries named `p` in five/");
    assert!(fs::metadata(m.join("five/p")).unwrap().is_dir());
    assert_eq!(sorted_names(&m.join("five/p")), strings(&["q"]));
    assert_eq!(fs::read(m.join("five/p/q")).unwrap(), b"blob five/p/q");
    assert!(fs::metadata(m.join("five/p-04999")).unwrap().is_file());
    m.unmount();
}

/// 2,000 blobs `many/file-NNNN.txt` of sizes 0..97: what `ls -l` must show.
fn seed_ls_dir(c: &TestContainer) -> BTreeMap<String, u64> {
    let expected: BTreeMap<String, u64> = (0..2000)
        .map(|i| (format!("file-{i:04}.txt"), (i * 7 % 97) as u64))
        .collect();
    c.put_many(
        expected
            .iter()
            .map(|(name, &size)| {
                (
                    format!("many/{name}"),
                    Bytes::from(vec![b'x'; size as usize]),
                )
            })
            .collect(),
    );
    expected
}

/// Runs `ls -l DIR` and checks every line: names and sizes exactly as expected.
fn check_ls_l(dir: &Path, expected: &BTreeMap<String, u64>) {
    let out = sh(&format!("ls -l {}", quote(dir)));
    let mut lines = out.lines();
    let total = lines.next().unwrap_or_default();
    assert!(total.starts_with("total "), "ls -l output: {total:?}");
    let mut got = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 9, "ls -l line {line:?}");
        assert!(fields[0].starts_with("-rw-r--r--"), "ls -l line {line:?}");
        let size: u64 = fields[4].parse().unwrap();
        got.insert(fields[8].to_string(), size);
    }
    assert_eq!(got.len(), expected.len(), "ls -l entries");
    assert!(
        got == *expected,
        "ls -l names and sizes differ from the blobs"
    );
}

#[test]
fn ls_l_of_2000_entries_costs_only_listing_requests() {
    let c = TestContainer::new();
    let expected = seed_ls_dir(&c);
    let m = Mount::new(&c);
    let dir = m.join("many");
    let ((), cost) = measure(&m, || check_ls_l(&dir, &expected));
    eprintln!("ls -l of 2,000 entries after a fresh mount: requests {cost:?}");
    // The lookup of `many` itself is a properties request and a one-result listing, sent
    // together; the 2,000 entries must cost nothing beyond the page that listed them.
    assert!(
        cost.properties <= 1,
        "ls -l sent properties requests for the entries: {cost:?}"
    );
    assert!(cost.list <= 3, "{cost:?}");
    assert_eq!(cost.get, 0, "{cost:?}");

    // Again, within --attr-ttl (60 s): nothing new to ask.
    let ((), cost) = measure(&m, || check_ls_l(&dir, &expected));
    eprintln!("second ls -l of 2,000 entries within the TTL: requests {cost:?}");
    assert_eq!(
        cost.list, 0,
        "a second ls -l within --attr-ttl sent list requests: {cost:?}"
    );
    assert_eq!(cost.properties, 0, "{cost:?}");
    m.unmount();

    // A fresh mount with the directory itself looked up first: nothing but the listing.
    let m = Mount::new(&c);
    let dir = m.join("many");
    assert!(fs::metadata(&dir).unwrap().is_dir());
    let ((), cost) = measure(&m, || check_ls_l(&dir, &expected));
    eprintln!("ls -l of 2,000 entries (directory looked up first): requests {cost:?}");
    assert_eq!(cost.properties, 0, "{cost:?}");
    assert!(cost.list <= 3, "{cost:?}");
    assert_eq!(cost.get, 0, "{cost:?}");
    m.unmount();
}

/// 20 directories of 50 files each at the top of the container; returns (path, size) sorted.
fn seed_tree(c: &TestContainer) -> Vec<(String, u64)> {
    let files: Vec<(String, u64)> = (0..20)
        .flat_map(|d| (0..50).map(move |f| (format!("d{d:02}/f{f:02}.dat"), (d * 50 + f) % 37)))
        .collect();
    c.put_many(
        files
            .iter()
            .map(|(name, size)| (name.clone(), Bytes::from(vec![b'y'; *size as usize])))
            .collect(),
    );
    files
}

#[test]
fn find_and_os_walk_of_a_tree_cost_no_properties_requests() {
    let c = TestContainer::new();
    let files = seed_tree(&c);
    let total_size: u64 = files.iter().map(|(_, s)| s).sum();

    let m = Mount::new(&c);
    let (out, cost) = measure(&m, || {
        sh(&format!("find {} -type f | wc -l", quote(m.path())))
    });
    eprintln!("find of 20 x 50 files: requests {cost:?}");
    assert_eq!(out.trim(), "1000", "find -type f | wc -l");
    assert_eq!(cost.properties, 0, "find: {cost:?}");
    // The root and each of the 20 directories listed once (one page each).
    assert_eq!(cost.list, 21, "find: {cost:?}");
    m.unmount();

    let m = Mount::new(&c);
    let script = r#"
import os, sys
root = sys.argv[1]
dirs = files = size = 0
names = []
for top, ds, fs in os.walk(root):
    dirs += len(ds)
    for f in fs:
        st = os.stat(os.path.join(top, f))
        files += 1
        size += st.st_size
        names.append(os.path.relpath(os.path.join(top, f), root) + " " + str(st.st_size))
print(dirs, files, size)
for n in sorted(names):
    print(n)
"#;
    let (out, cost) = measure(&m, || python3(script, &[m.path()], "python3 os.walk"));
    eprintln!("os.walk + os.stat of 20 x 50 files: requests {cost:?}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("20 1000 {total_size}"),
        "os.walk: directories, files, total size"
    );
    let got: Vec<&str> = lines.collect();
    let expected: Vec<String> = files.iter().map(|(n, s)| format!("{n} {s}")).collect();
    assert_eq!(got, expected, "os.walk + os.stat: every file and its size");
    assert_eq!(cost.properties, 0, "os.walk + os.stat: {cost:?}");
    assert_eq!(cost.list, 21, "os.walk + os.stat: {cost:?}");
    m.unmount();
}

/// Sibling directories listed ahead when a walker opens one (`src/fs/dir_prefetch.rs`).
const SIBLINGS_AHEAD: u64 = 8;

/// Like `measure`, for an `op` that starts `lists` listings in the background: on a busy
/// machine some may still wait for a slot when the counts look settled (4 run at a time), so
/// wait until `lists` have been sent (at most 15 s), then settle as usual.
fn measure_background_lists<T>(m: &Mount, lists: u64, op: impl FnOnce() -> T) -> (T, Counts) {
    let before = counts::settled_counts(m);
    let out = op();
    let deadline = Instant::now() + Duration::from_secs(15);
    while counts::request_counts(m).since(&before).list < lists && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    (out, counts::settled_counts(m).since(&before))
}

#[test]
fn opening_a_subdirectory_lists_its_next_siblings_ahead_and_ls_does_not() {
    let c = TestContainer::new();
    let files = seed_tree(&c);
    let m = Mount::new(&c);

    // A listing alone (`ls -l` of the root) opens no sub-directory: it costs one listing.
    let (_, cost) = measure(&m, || sh(&format!("ls -l {} >/dev/null", quote(m.path()))));
    assert_eq!(cost.list, 1, "ls -l of the root: {cost:?}");

    // Opening d00 lists d00 and, in the background, d01..d08.
    let (names, cost) =
        measure_background_lists(&m, 1 + SIBLINGS_AHEAD, || sorted_names(&m.join("d00")));
    assert_eq!(names.len(), 50, "d00 lists its 50 files");
    assert_eq!(cost.list, 1 + SIBLINGS_AHEAD, "opening d00: {cost:?}");

    // Those eight are then served from what was fetched ahead: listing d01..d08 costs only the
    // read-ahead each of them triggers in turn (d09..d16), never a second listing of itself.
    let (listed, cost) = measure_background_lists(&m, SIBLINGS_AHEAD, || {
        (1..=SIBLINGS_AHEAD)
            .map(|d| sorted_names(&m.join(format!("d{d:02}"))))
            .collect::<Vec<_>>()
    });
    for (d, names) in (1..).zip(&listed) {
        let expected: Vec<String> = files
            .iter()
            .filter_map(|(n, _)| n.strip_prefix(&format!("d{d:02}/")).map(str::to_string))
            .collect();
        assert_eq!(names, &expected, "d{d:02} listed ahead");
    }
    assert_eq!(
        cost.list, SIBLINGS_AHEAD,
        "d01..d08 (d09..d16 ahead): {cost:?}"
    );
    m.unmount();
}

#[test]
fn a_listing_fetched_ahead_still_shows_changes_made_through_the_mount() {
    let c = TestContainer::new();
    seed_tree(&c);
    let m = Mount::new(&c);
    assert_eq!(sorted_names(m.path()).len(), 20);
    // Opening d00 fetches d01's listing ahead; the changes below come after it.
    assert_eq!(sorted_names(&m.join("d00")).len(), 50);
    let _ = counts::settled_counts(&m);
    fs::remove_file(m.join("d01/f00.dat")).unwrap();
    fs::write(m.join("d02/new.dat"), b"new").unwrap();
    let d01 = sorted_names(&m.join("d01"));
    assert_eq!(d01.len(), 49, "d01 after the unlink: {d01:?}");
    assert!(!d01.contains(&"f00.dat".to_string()));
    let d02 = sorted_names(&m.join("d02"));
    assert_eq!(d02.len(), 51, "d02 after the create: {d02:?}");
    assert!(d02.contains(&"new.dat".to_string()));
    m.unmount();
}

#[test]
fn missing_names_are_cached_for_the_negative_ttl() {
    let c = TestContainer::new();
    c.put("present.txt", b"here");
    let m = Mount::builder(&c).args(["--negative-ttl", "2"]).mount();
    // The second stat must come well within the 2 s of the first (which cached the absence);
    // if the service was too slow to make that so, try again with another name.
    let mut checked = None;
    for attempt in 0..3 {
        let name = format!("later-{attempt}.txt");
        let path = m.join(&name);
        let looked_up = Instant::now();
        assert_enoent(&path, "before the blob exists");
        c.put(&name, b"created remotely");
        let before_second = looked_up.elapsed();
        let second = fs::metadata(&path);
        if before_second < Duration::from_millis(1500) {
            match second {
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}"),
                Ok(_) => panic!(
                    "{name} was found {before_second:?} after a lookup that did not find it: \
                     the absence should be cached for --negative-ttl 2"
                ),
            }
            checked = Some(path);
            break;
        }
        eprintln!("note: creating the blob took {before_second:?}; trying again");
    }
    let path = checked.expect("the service was too slow for the check in 3 attempts");
    sleep(Duration::from_secs(3));
    let meta = fs::metadata(&path).expect("after the negative TTL the new blob is found");
    assert_eq!(meta.len(), 16);
    assert_eq!(fs::read(&path).unwrap(), b"created remotely");
    m.unmount();
}

#[test]
fn remote_changes_show_after_the_attr_ttl() {
    let c = TestContainer::new();
    c.put("d/keep.txt", b"keep");
    c.put("d/gone.txt", b"gone");
    c.put("d/grow.txt", b"0123456789");
    let m = Mount::builder(&c).args(["--attr-ttl", "2"]).mount();
    let dir = m.join("d");
    assert_eq!(
        sorted_names(&dir),
        strings(&["gone.txt", "grow.txt", "keep.txt"])
    );
    assert_eq!(fs::metadata(m.join("d/grow.txt")).unwrap().len(), 10);
    assert_eq!(fs::metadata(m.join("d/gone.txt")).unwrap().len(), 4);

    c.put("d/new.txt", b"new");
    c.delete("d/gone.txt");
    c.put("d/grow.txt", b"0123456789 and then some");
    sleep(Duration::from_secs(3));

    // stat first (before any listing refreshes the cache): the TTL alone must do it.
    assert_eq!(
        fs::metadata(m.join("d/grow.txt")).unwrap().len(),
        24,
        "size of a blob changed remotely, after the TTL"
    );
    assert_enoent(
        &m.join("d/gone.txt"),
        "a blob deleted remotely, after the TTL",
    );
    assert_eq!(
        sorted_names(&dir),
        strings(&["grow.txt", "keep.txt", "new.txt"])
    );
    assert_eq!(
        fs::read(m.join("d/grow.txt")).unwrap(),
        b"0123456789 and then some"
    );
    assert_eq!(fs::read(m.join("d/new.txt")).unwrap(), b"new");
    m.unmount();
}

#[test]
fn changes_through_the_mount_are_visible_at_once() {
    let c = TestContainer::new();
    c.put("d/a.txt", b"a");
    c.put("d/b.txt", b"bb");
    c.put("d/c.txt", b"ccc");
    let m = Mount::new(&c); // default --attr-ttl 60: nothing may wait for a TTL
    let dir = m.join("d");
    assert_eq!(sorted_names(&dir), strings(&["a.txt", "b.txt", "c.txt"]));
    for name in ["a.txt", "b.txt", "c.txt"] {
        fs::metadata(dir.join(name)).unwrap();
    }

    fs::write(dir.join("new.txt"), b"created through the mount").unwrap();
    assert_eq!(
        sorted_names(&dir),
        strings(&["a.txt", "b.txt", "c.txt", "new.txt"]),
        "after create"
    );
    fs::remove_file(dir.join("a.txt")).unwrap();
    assert_eq!(
        sorted_names(&dir),
        strings(&["b.txt", "c.txt", "new.txt"]),
        "after delete"
    );
    assert_enoent(&dir.join("a.txt"), "deleted through the mount");
    fs::rename(dir.join("b.txt"), dir.join("renamed.txt")).unwrap();
    assert_eq!(
        sorted_names(&dir),
        strings(&["c.txt", "new.txt", "renamed.txt"]),
        "after rename"
    );
    assert_enoent(&dir.join("b.txt"), "renamed away through the mount");
    assert_eq!(fs::metadata(dir.join("renamed.txt")).unwrap().len(), 2);
    fs::create_dir(dir.join("sub")).unwrap();
    fs::rename(dir.join("c.txt"), dir.join("sub/c.txt")).unwrap();
    assert_eq!(
        sorted_names(&dir),
        strings(&["new.txt", "renamed.txt", "sub"]),
        "after mkdir and a rename into it"
    );
    assert_eq!(sorted_names(&dir.join("sub")), strings(&["c.txt"]));
    fs::write(dir.join("renamed.txt"), b"rewritten, longer").unwrap();
    assert_eq!(fs::metadata(dir.join("renamed.txt")).unwrap().len(), 17);

    assert_eq!(
        c.list_all("d/"),
        strings(&["d/new.txt", "d/renamed.txt", "d/sub", "d/sub/c.txt"])
    );
    assert_eq!(c.get("d/renamed.txt"), b"rewritten, longer");
    m.unmount();
}

#[test]
fn a_name_that_is_both_a_blob_and_a_prefix_is_one_directory() {
    // (The same rule across listing pages is checked with the 5,001-entry directory of
    // `listings_of_0_1_5001_and_20000_entries_are_exact`.)
    let c = TestContainer::new();
    c.put("a", b"blob a");
    c.put("a/b", b"blob a/b");
    c.put("z.txt", b"z");
    c.put("d/e", b"blob d/e");
    c.put("d/e/f", b"blob d/e/f");
    c.put("d/e/g", b"blob d/e/g");
    let m = Mount::new(&c);

    assert_eq!(sorted_names(m.path()), strings(&["a", "d", "z.txt"]));
    // Looked up before any listing (a properties request and a listing, concurrently).
    let a = fs::metadata(m.join("a")).unwrap();
    assert!(a.is_dir(), "`a` (a blob and a prefix) must be a directory");
    assert_eq!(sorted_names(&m.join("a")), strings(&["b"]));
    assert_eq!(fs::read(m.join("a/b")).unwrap(), b"blob a/b");
    // Listed once, as a directory (not a file and a directory of the same name).
    let a_entries = entries_are_dirs(m.path(), "a");
    assert_eq!(
        a_entries,
        vec![true],
        "entries named `a` in the root listing"
    );

    // One level down, listed before it is looked up.
    let e_entries: Vec<bool> = fs::read_dir(m.join("d"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            assert_eq!(e.file_name(), "e");
            e.file_type().unwrap().is_dir()
        })
        .collect();
    assert_eq!(e_entries, vec![true], "entries of d/");
    assert!(fs::metadata(m.join("d/e")).unwrap().is_dir());
    assert_eq!(sorted_names(&m.join("d/e")), strings(&["f", "g"]));
    assert_eq!(fs::read(m.join("d/e/g")).unwrap(), b"blob d/e/g");
    m.unmount();
}

#[test]
fn with_attr_ttl_0_every_stat_sees_remote_changes() {
    let c = TestContainer::new();
    c.put("live.txt", b"1");
    let m = Mount::builder(&c)
        .args(["--attr-ttl", "0", "--negative-ttl", "0"])
        .mount();
    let path = m.join("live.txt");
    assert_eq!(fs::metadata(&path).unwrap().len(), 1);
    for size in [5usize, 2, 40, 0, 7] {
        c.put("live.txt", &vec![b'k'; size]);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            size as u64,
            "stat right after the blob was rewritten with {size} bytes"
        );
    }
    assert_eq!(fs::read(&path).unwrap(), b"kkkkkkk");
    c.delete("live.txt");
    assert_enoent(&path, "right after the blob was deleted remotely");
    c.put("live.txt", b"back again");
    assert_eq!(
        fs::metadata(&path).map(|m| m.len()).map_err(|e| e.kind()),
        Ok(10),
        "right after the blob was created again"
    );
    // A listing reflects the change immediately too.
    c.put("other.txt", b"o");
    assert_eq!(sorted_names(m.path()), strings(&["live.txt", "other.txt"]));
    let ((), cost) = measure(&m, || {
        for _ in 0..3 {
            fs::metadata(&path).unwrap();
        }
    });
    // Each stat asked the service (nothing cached): at least one request each.
    assert!(
        cost.properties >= 3,
        "three stats with --attr-ttl 0 must each ask the service: {cost:?}"
    );
    m.unmount();
}
