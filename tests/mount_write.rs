//! Writing through a real mount and checking the result with the SDK: new files, overwrite,
//! append, truncate, delete, a large (block-upload) file, fsync before close, read-only
//! mounts, and the end of a mount (umount, SIGTERM).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    azblobfs_command, daemon_pids, dir_names, emulator_args, errno_of, is_mounted, kill_daemons,
    lazy_unmount, random_bytes, run_with_timeout, sha256_hex, sorted_names, tail, wait_pids_gone,
    Mount, MountBuilder, TestContainer, DAEMON_EXIT_TIMEOUT, MOUNT_TIMEOUT,
};

#[test]
fn new_file_is_uploaded_and_reads_back() {
    let c = TestContainer::new();
    c.put("existing/dir/keep.txt", b"keep\n");
    let m = Mount::new(&c);

    let content = b"first line\nsecond line\n\x00\xffbinary tail";
    fs::write(m.join("new.txt"), content).unwrap();
    assert_eq!(c.get("new.txt"), content, "blob written at the root");

    let nested = b"nested content\n";
    fs::write(m.join("existing/dir/nested.txt"), nested).unwrap();
    assert_eq!(c.get("existing/dir/nested.txt"), nested);
    assert_eq!(
        c.get("existing/dir/keep.txt"),
        b"keep\n",
        "sibling untouched"
    );

    // Through the mount too, and with the right size.
    assert_eq!(fs::read(m.join("new.txt")).unwrap(), content);
    assert_eq!(
        fs::metadata(m.join("new.txt")).unwrap().len(),
        content.len() as u64
    );
    assert_eq!(fs::read(m.join("existing/dir/nested.txt")).unwrap(), nested);

    // An empty new file is a 0-byte blob.
    File::create(m.join("empty.txt")).unwrap();
    assert!(c.exists("empty.txt"), "empty file must exist as a blob");
    assert_eq!(c.size("empty.txt"), 0);

    assert_eq!(
        c.list_all(""),
        vec![
            "empty.txt",
            "existing/dir/keep.txt",
            "existing/dir/nested.txt",
            "new.txt"
        ]
    );
    m.unmount();
}

#[test]
fn overwrite_with_shorter_content_replaces_it() {
    let c = TestContainer::new();
    let long = b"this is the long original content, much longer than what replaces it\n";
    c.put("doc.txt", long);
    let m = Mount::new(&c);
    // Read first, so that a stale cached copy would show if the overwrite kept it.
    assert_eq!(fs::read(m.join("doc.txt")).unwrap(), long);

    fs::write(m.join("doc.txt"), b"short\n").unwrap();
    assert_eq!(c.get("doc.txt"), b"short\n");
    assert_eq!(fs::read(m.join("doc.txt")).unwrap(), b"short\n");
    assert_eq!(fs::metadata(m.join("doc.txt")).unwrap().len(), 6);

    // Overwriting in place (no O_TRUNC) changes only the bytes written.
    let f = OpenOptions::new()
        .write(true)
        .open(m.join("doc.txt"))
        .unwrap();
    f.write_all_at(b"SH", 0).unwrap();
    drop(f);
    assert_eq!(c.get("doc.txt"), b"SHort\n");
    m.unmount();
}

/// Opens `path` for appending, writes `data` and closes it.
fn append_to(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
}

/// Opens `path` for writing, truncates or extends it to `len` bytes and closes it.
fn set_len(path: &Path, len: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn append_adds_to_the_end() {
    let c = TestContainer::new();
    c.put("log.txt", b"line 1\n");
    let m = Mount::new(&c);

    append_to(&m.join("log.txt"), b"line 2\n");
    assert_eq!(c.get("log.txt"), b"line 1\nline 2\n");

    // A second append, to a file created through the mount.
    fs::write(m.join("made-here.txt"), b"a").unwrap();
    for piece in [&b"b"[..], b"cd", b"\n"] {
        append_to(&m.join("made-here.txt"), piece);
    }
    assert_eq!(c.get("made-here.txt"), b"abcd\n");

    // append + create of a file that does not exist yet.
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(m.join("fresh.log"))
        .unwrap();
    f.write_all(b"fresh\n").unwrap();
    drop(f);
    assert_eq!(c.get("fresh.log"), b"fresh\n");

    assert_eq!(fs::read(m.join("log.txt")).unwrap(), b"line 1\nline 2\n");
    m.unmount();
}

#[test]
fn truncate_smaller_and_larger() {
    let c = TestContainer::new();
    let original: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8 + 1).collect();
    c.put("t.bin", &original);
    let m = Mount::new(&c);

    set_len(&m.join("t.bin"), 100);
    assert_eq!(c.get("t.bin"), &original[..100], "after set_len(100)");
    assert_eq!(fs::metadata(m.join("t.bin")).unwrap().len(), 100);

    set_len(&m.join("t.bin"), 300);
    let mut expected = original[..100].to_vec();
    expected.resize(300, 0);
    assert_eq!(c.get("t.bin"), expected, "after set_len(300): zero-filled");
    assert_eq!(fs::read(m.join("t.bin")).unwrap(), expected);

    // truncate(2) by path, without an open handle, and to zero.
    let status = std::process::Command::new("truncate")
        .args(["-s", "0"])
        .arg(m.join("t.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(c.exists("t.bin"));
    assert_eq!(c.size("t.bin"), 0, "after truncate -s 0");
    assert_eq!(fs::metadata(m.join("t.bin")).unwrap().len(), 0);
    m.unmount();
}

#[test]
fn remove_file_deletes_the_blob() {
    let c = TestContainer::new();
    c.put("dir/gone.txt", b"bye\n");
    c.put("dir/stays.txt", b"stay\n");
    let m = Mount::new(&c);
    assert_eq!(fs::read(m.join("dir/gone.txt")).unwrap(), b"bye\n");

    fs::remove_file(m.join("dir/gone.txt")).unwrap();
    assert!(!c.exists("dir/gone.txt"), "blob must be deleted");
    assert!(c.exists("dir/stays.txt"));
    let err = fs::metadata(m.join("dir/gone.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(dir_names(&m.join("dir")), vec!["stays.txt"]);

    // A file written through the mount can be deleted through it too.
    fs::write(m.join("temp.txt"), b"temp").unwrap();
    assert!(c.exists("temp.txt"));
    fs::remove_file(m.join("temp.txt")).unwrap();
    assert!(!c.exists("temp.txt"));
    assert_eq!(c.list_all(""), vec!["dir/stays.txt"]);
    m.unmount();
}

#[test]
fn writes_a_40_mib_file_byte_exact() {
    const SIZE: usize = 40 << 20;
    let c = TestContainer::new();
    let data = random_bytes(SIZE, 0x40_4d_69_42);
    let m = Mount::new(&c);

    let mut f = File::create(m.join("big.bin")).unwrap();
    // Odd-sized writes, so that nothing lines up with block boundaries by accident.
    for chunk in data.chunks(1_000_003) {
        f.write_all(chunk).unwrap();
    }
    drop(f);

    assert_eq!(c.size("big.bin"), SIZE as u64);
    let blob = c.get("big.bin");
    assert_eq!(blob.len(), SIZE);
    if blob != data {
        let at = blob.iter().zip(&data).position(|(a, b)| a != b);
        panic!("the uploaded blob differs from what was written, first at byte {at:?}");
    }
    assert_eq!(sha256_hex(&blob), sha256_hex(&data));
    assert_eq!(fs::metadata(m.join("big.bin")).unwrap().len(), SIZE as u64);
    m.unmount();
}

#[test]
fn fsync_uploads_before_close() {
    let c = TestContainer::new();
    let m = Mount::new(&c);

    let mut f = File::create(m.join("synced.txt")).unwrap();
    f.write_all(b"part one\n").unwrap();
    f.sync_all().unwrap();
    // The file is still open: only fsync can have uploaded it.
    assert_eq!(c.get("synced.txt"), b"part one\n", "after the first fsync");

    f.write_all(b"part two\n").unwrap();
    f.sync_data().unwrap();
    assert_eq!(
        c.get("synced.txt"),
        b"part one\npart two\n",
        "after the second fsync"
    );

    // Rewrite the start through the same handle, then fsync once more.
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"PART").unwrap();
    f.sync_all().unwrap();
    assert_eq!(c.get("synced.txt"), b"PART one\npart two\n");
    drop(f);
    assert_eq!(c.get("synced.txt"), b"PART one\npart two\n");
    m.unmount();
}

/// Seeds a container, mounts it read-only with `builder`, and checks that reads work and every
/// kind of write fails with EROFS, leaving the container as it was.
fn check_read_only(c: &TestContainer, builder: MountBuilder) {
    let m = builder.mount();
    let before = c.list_all("");

    assert_eq!(fs::read(m.join("file.txt")).unwrap(), b"original\n");
    assert_eq!(fs::read(m.join("dir/inner.txt")).unwrap(), b"inner\n");
    assert_eq!(sorted_names(m.path()), vec!["dir", "file.txt"]);

    let rofs = |what: &str, errno: i32| {
        assert_eq!(
            errno,
            libc::EROFS,
            "{what}: expected EROFS ({}), got {errno} ({})",
            libc::EROFS,
            std::io::Error::from_raw_os_error(errno)
        )
    };
    rofs(
        "create a new file",
        errno_of(File::create(m.join("new.txt")), "create"),
    );
    rofs(
        "open an existing file for writing",
        errno_of(
            OpenOptions::new().write(true).open(m.join("file.txt")),
            "open for write",
        ),
    );
    rofs(
        "open for append",
        errno_of(
            OpenOptions::new().append(true).open(m.join("file.txt")),
            "open for append",
        ),
    );
    rofs(
        "write (O_TRUNC)",
        errno_of(fs::write(m.join("file.txt"), b"changed"), "write"),
    );
    rofs("mkdir", errno_of(fs::create_dir(m.join("newdir")), "mkdir"));
    rofs(
        "unlink",
        errno_of(fs::remove_file(m.join("file.txt")), "unlink"),
    );
    rofs("rmdir", errno_of(fs::remove_dir(m.join("dir")), "rmdir"));
    rofs(
        "rename",
        errno_of(
            fs::rename(m.join("file.txt"), m.join("renamed.txt")),
            "rename",
        ),
    );
    rofs(
        "rename a directory",
        errno_of(fs::rename(m.join("dir"), m.join("dir2")), "rename dir"),
    );
    // truncate(2) by path: std has no such call, so use libc directly.
    let path =
        std::ffi::CString::new(m.join("file.txt").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::truncate(path.as_ptr(), 0) };
    assert_eq!(rc, -1, "truncate must fail");
    rofs(
        "truncate",
        std::io::Error::last_os_error().raw_os_error().unwrap(),
    );

    // Nothing changed.
    assert_eq!(c.list_all(""), before);
    assert_eq!(c.get("file.txt"), b"original\n");
    assert_eq!(fs::read(m.join("file.txt")).unwrap(), b"original\n");
    m.unmount();
}

fn seed_for_read_only() -> TestContainer {
    let c = TestContainer::new();
    c.put("file.txt", b"original\n");
    c.put("dir/inner.txt", b"inner\n");
    c
}

#[test]
fn read_only_flag_rejects_every_write_with_erofs() {
    let c = seed_for_read_only();
    check_read_only(&c, Mount::builder(&c).read_only());
}

#[test]
fn read_only_mount_option_ro_rejects_every_write_with_erofs() {
    let c = seed_for_read_only();
    check_read_only(&c, Mount::builder(&c).option("ro"));
}

#[test]
fn umount_ends_the_daemon_and_keeps_the_data() {
    let c = TestContainer::new();
    let m = Mount::new(&c);
    assert!(!m.pids().is_empty(), "the daemon's pid should be known");
    let pids = m.pids().to_vec();
    fs::write(m.join("before-umount.txt"), b"data\n").unwrap();
    let mountpoint = m.path().to_path_buf();
    // Panics unless umount works and every daemon pid exits.
    m.unmount();
    assert!(!is_mounted(&mountpoint));
    assert!(wait_pids_gone(&pids, Duration::from_secs(1)));
    assert_eq!(c.get("before-umount.txt"), b"data\n");
}

/// A mount made by hand (not [`Mount`]), so that the test can end it itself with a signal.
struct HandMount {
    _dir: tempfile::TempDir,
    mountpoint: PathBuf,
    log: PathBuf,
    /// The one daemon process serving it.
    pids: Vec<u32>,
}

impl HandMount {
    fn new(c: &TestContainer) -> HandMount {
        let dir = tempfile::TempDir::new().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let mountpoint = base.join("mnt");
        fs::create_dir(&mountpoint).unwrap();
        let log = base.join("azblobfs.log");
        let mut cmd = azblobfs_command();
        cmd.args(emulator_args())
            .arg("--cache-dir")
            .arg(base.join("cache"))
            .arg("--log-file")
            .arg(&log)
            .arg("--log-level")
            .arg("debug")
            .arg(c.name())
            .arg(&mountpoint);
        let out = run_with_timeout(cmd, MOUNT_TIMEOUT);
        assert_eq!(out.code, Some(0), "mount failed: {}", out.stderr);
        assert!(is_mounted(&mountpoint), "not mounted after exit 0");
        let mut hm = HandMount {
            _dir: dir,
            mountpoint,
            log,
            pids: Vec::new(),
        };
        hm.pids = daemon_pids(&hm.mountpoint);
        assert_eq!(hm.pids.len(), 1, "one daemon process: {:?}", hm.pids);
        hm
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HandMount {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            eprintln!("log:\n{}", tail(&self.log(), 60));
            lazy_unmount(&self.mountpoint);
            kill_daemons(&self.mountpoint);
        }
    }
}

fn sigterm(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: kill(2) on the daemon this test started.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {pid}");
    }
}

#[test]
fn sigterm_unmounts_cleanly_with_written_data_uploaded() {
    let c = TestContainer::new();
    let hm = HandMount::new(&c);
    let pids = &hm.pids;

    let data = random_bytes(3 << 20, 7);
    fs::write(hm.mountpoint.join("written.bin"), &data).unwrap();
    fs::create_dir(hm.mountpoint.join("made-dir")).unwrap();
    fs::write(hm.mountpoint.join("made-dir/small.txt"), b"small\n").unwrap();

    sigterm(pids);
    assert!(
        wait_pids_gone(pids, DAEMON_EXIT_TIMEOUT),
        "the daemon did not exit after SIGTERM\nlog:\n{}",
        tail(&hm.log(), 40)
    );
    assert!(
        !is_mounted(&hm.mountpoint),
        "{} is still in /proc/mounts after the daemon exited",
        hm.mountpoint.display()
    );
    // The mountpoint is a plain empty directory again (not a dead "transport endpoint").
    assert_eq!(fs::read_dir(&hm.mountpoint).unwrap().count(), 0);

    assert_eq!(c.size("written.bin"), data.len() as u64);
    assert!(c.get("written.bin") == data, "written.bin content differs");
    assert_eq!(c.get("made-dir/small.txt"), b"small\n");
    assert!(c.exists("made-dir"), "directory marker of made-dir");
    let log = hm.log();
    assert!(log.contains("unmounted"), "log:\n{}", tail(&log, 30));
}

#[test]
fn sigterm_with_a_file_still_open_uploads_it_when_closed() {
    let c = TestContainer::new();
    let hm = HandMount::new(&c);
    let pids = &hm.pids;

    let mut f = File::create(hm.mountpoint.join("open.txt")).unwrap();
    f.write_all(b"written before SIGTERM\n").unwrap();
    sigterm(pids);
    // The mount is busy; the daemon detaches it and keeps serving the open file.
    std::thread::sleep(Duration::from_millis(500));
    f.write_all(b"and after\n").unwrap();
    drop(f);

    assert!(
        wait_pids_gone(pids, DAEMON_EXIT_TIMEOUT),
        "the daemon did not exit after SIGTERM and the last close\nlog:\n{}",
        tail(&hm.log(), 40)
    );
    assert!(!is_mounted(&hm.mountpoint));
    assert_eq!(c.get("open.txt"), b"written before SIGTERM\nand after\n");
}

#[test]
fn file_open_for_reading_can_be_written_through_another_handle() {
    let c = TestContainer::new();
    c.put("shared.log", b"first\n");
    let m = Mount::new(&c);
    // Read it whole once, so that it is fully cached, then keep a reader open (as tail -f does).
    assert_eq!(fs::read(m.join("shared.log")).unwrap(), b"first\n");
    let reader = File::open(m.join("shared.log")).unwrap();
    let mut buf = [0u8; 6];
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"first\n");

    let mut writer = OpenOptions::new()
        .append(true)
        .open(m.join("shared.log"))
        .expect("opening for append while a reader has the file open");
    writer.write_all(b"second\n").unwrap();
    drop(writer);
    assert_eq!(c.get("shared.log"), b"first\nsecond\n");

    // The reader sees the appended bytes.
    let mut more = [0u8; 7];
    reader.read_exact_at(&mut more, 6).unwrap();
    assert_eq!(&more, b"second\n");
    drop(reader);
    assert_eq!(fs::read(m.join("shared.log")).unwrap(), b"first\nsecond\n");
    m.unmount();
}
