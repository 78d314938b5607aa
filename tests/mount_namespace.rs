//! The namespace through a real mount: mkdir, rmdir, rename, unlink and their errors, names
//! with special characters, a directory of 5,100 entries, and prefix mounts.

mod common;

use std::fs;
use std::io::Write;

use azblobfs::store::BlobStore;
use bytes::Bytes;
use common::{assert_errno, block_on, dir_names, sorted_names, strings, Mount, TestContainer};

fn is_dir_marker(c: &TestContainer, name: &str) -> bool {
    block_on(c.store().properties(name))
        .unwrap_or_else(|e| panic!("properties of {name:?}: {e}"))
        .is_dir_marker
}

#[test]
fn mkdir_creates_a_directory_marker_blob() {
    let c = TestContainer::new();
    let m = Mount::new(&c);

    fs::create_dir(m.join("newdir")).unwrap();
    assert!(c.exists("newdir"), "mkdir must write a marker blob");
    assert!(is_dir_marker(&c, "newdir"), "the blob must be a dir marker");
    assert_eq!(c.size("newdir"), 0);
    assert_eq!(c.list_all(""), strings(&["newdir"]));
    assert!(fs::metadata(m.join("newdir")).unwrap().is_dir());
    assert_eq!(sorted_names(m.path()), strings(&["newdir"]));
    assert_eq!(sorted_names(&m.join("newdir")), Vec::<String>::new());

    // Nested, and create_dir_all through several levels.
    fs::create_dir(m.join("newdir/sub")).unwrap();
    fs::create_dir_all(m.join("x/y/z")).unwrap();
    assert_eq!(
        c.list_all(""),
        strings(&["newdir", "newdir/sub", "x", "x/y", "x/y/z"])
    );
    for marker in ["newdir/sub", "x", "x/y", "x/y/z"] {
        assert!(is_dir_marker(&c, marker), "{marker} is a dir marker");
    }
    assert_eq!(sorted_names(&m.join("x/y")), strings(&["z"]));

    // A file in the new directory lands under its prefix.
    fs::write(m.join("x/y/z/f.txt"), b"deep\n").unwrap();
    assert_eq!(c.get("x/y/z/f.txt"), b"deep\n");
    m.unmount();
}

#[test]
fn rmdir_removes_an_empty_directory() {
    let c = TestContainer::new();
    c.put_dir_marker("sdk-made");
    c.put("other.txt", b"x");
    let m = Mount::new(&c);

    fs::create_dir(m.join("made-here")).unwrap();
    assert!(c.exists("made-here"));
    fs::remove_dir(m.join("made-here")).unwrap();
    assert!(!c.exists("made-here"), "marker of made-here must be gone");
    assert_errno(fs::metadata(m.join("made-here")), libc::ENOENT, "stat");

    fs::remove_dir(m.join("sdk-made")).unwrap();
    assert!(!c.exists("sdk-made"), "marker of sdk-made must be gone");

    assert_eq!(sorted_names(m.path()), strings(&["other.txt"]));
    assert_eq!(c.list_all(""), strings(&["other.txt"]));

    // The name is free again.
    fs::create_dir(m.join("made-here")).unwrap();
    assert!(c.exists("made-here"));
    m.unmount();
}

#[test]
fn rmdir_of_a_non_empty_directory_fails_enotempty() {
    let c = TestContainer::new();
    c.put_dir_marker("withfile");
    c.put("withfile/f.txt", b"f");
    c.put("implicit/g.txt", b"g");
    c.put_dir_marker("withsubdir");
    c.put_dir_marker("withsubdir/inner");
    c.put("file.txt", b"not a dir");
    let m = Mount::new(&c);

    for dir in ["withfile", "implicit", "withsubdir"] {
        assert_errno(
            fs::remove_dir(m.join(dir)),
            libc::ENOTEMPTY,
            &format!("rmdir {dir}"),
        );
    }
    // Non-empty only through a file created through the mount.
    fs::create_dir(m.join("fresh")).unwrap();
    fs::write(m.join("fresh/new.txt"), b"new").unwrap();
    assert_errno(
        fs::remove_dir(m.join("fresh")),
        libc::ENOTEMPTY,
        "rmdir fresh",
    );
    // rmdir of a file is ENOTDIR, of a missing name ENOENT.
    assert_errno(
        fs::remove_dir(m.join("file.txt")),
        libc::ENOTDIR,
        "rmdir file",
    );
    assert_errno(
        fs::remove_dir(m.join("missing")),
        libc::ENOENT,
        "rmdir missing",
    );

    // Nothing was removed.
    assert_eq!(
        c.list_all(""),
        strings(&[
            "file.txt",
            "fresh",
            "fresh/new.txt",
            "implicit/g.txt",
            "withfile",
            "withfile/f.txt",
            "withsubdir",
            "withsubdir/inner",
        ])
    );
    assert_eq!(fs::read(m.join("withfile/f.txt")).unwrap(), b"f");
    m.unmount();
}

#[test]
fn mkdir_of_an_existing_name_fails_eexist() {
    let c = TestContainer::new();
    c.put_dir_marker("marker-dir");
    c.put("implicit-dir/a.txt", b"a");
    c.put("file.txt", b"file");
    let m = Mount::new(&c);
    fs::create_dir(m.join("made-here")).unwrap();

    for name in ["marker-dir", "implicit-dir", "file.txt", "made-here"] {
        assert_errno(
            fs::create_dir(m.join(name)),
            libc::EEXIST,
            &format!("mkdir {name}"),
        );
    }
    // The existing file was not replaced by a directory.
    assert!(fs::metadata(m.join("file.txt")).unwrap().is_file());
    assert_eq!(c.get("file.txt"), b"file");
    assert!(!is_dir_marker(&c, "file.txt"));
    assert!(!c.exists("implicit-dir"), "no marker added to implicit-dir");
    m.unmount();
}

#[test]
fn rename_of_a_file_moves_the_blob() {
    let c = TestContainer::new();
    c.put("old.txt", b"the content\n");
    c.put("dir/moved.bin", b"\x00\x01\x02");
    c.put("victim.txt", b"will be replaced");
    c.put("replacer.txt", b"replacement");
    let m = Mount::new(&c);
    assert_eq!(fs::read(m.join("old.txt")).unwrap(), b"the content\n");

    fs::rename(m.join("old.txt"), m.join("new.txt")).unwrap();
    assert!(!c.exists("old.txt"), "old blob must be gone");
    assert_eq!(c.get("new.txt"), b"the content\n");
    assert_eq!(fs::read(m.join("new.txt")).unwrap(), b"the content\n");
    assert_errno(fs::metadata(m.join("old.txt")), libc::ENOENT, "stat old");

    // Into another directory (one that exists only through the moved file's new name).
    fs::create_dir(m.join("target")).unwrap();
    fs::rename(m.join("dir/moved.bin"), m.join("target/moved.bin")).unwrap();
    assert!(!c.exists("dir/moved.bin"));
    assert_eq!(c.get("target/moved.bin"), b"\x00\x01\x02");

    // Over an existing file: replaced.
    fs::rename(m.join("replacer.txt"), m.join("victim.txt")).unwrap();
    assert!(!c.exists("replacer.txt"));
    assert_eq!(c.get("victim.txt"), b"replacement");
    assert_eq!(fs::read(m.join("victim.txt")).unwrap(), b"replacement");

    // A file written through the mount, renamed after close.
    fs::write(m.join("written.txt"), b"written").unwrap();
    fs::rename(m.join("written.txt"), m.join("target/written.txt")).unwrap();
    assert!(!c.exists("written.txt"));
    assert_eq!(c.get("target/written.txt"), b"written");

    // Renaming a missing file is ENOENT.
    assert_errno(
        fs::rename(m.join("nope.txt"), m.join("nope2.txt")),
        libc::ENOENT,
        "rename missing",
    );

    assert_eq!(
        c.list_all(""),
        strings(&[
            "new.txt",
            "target",
            "target/moved.bin",
            "target/written.txt",
            "victim.txt"
        ])
    );
    assert_eq!(
        sorted_names(m.path()),
        strings(&["new.txt", "target", "victim.txt"])
    );
    m.unmount();
}

#[test]
fn rename_of_a_directory_moves_everything_below() {
    let c = TestContainer::new();
    c.put_dir_marker("src");
    c.put("src/a.txt", b"a\n");
    c.put("src/sub/b.txt", b"b\n");
    c.put("src/sub/deeper/c.txt", b"c\n");
    c.put_dir_marker("src/emptysub");
    c.put("srcfile.txt", b"sibling with a common prefix\n");
    c.put("src2/keep.txt", b"keep\n");
    let m = Mount::new(&c);
    assert_eq!(
        sorted_names(&m.join("src")),
        strings(&["a.txt", "emptysub", "sub"])
    );

    fs::rename(m.join("src"), m.join("dst")).unwrap();

    assert_eq!(
        c.list_all(""),
        strings(&[
            "dst",
            "dst/a.txt",
            "dst/emptysub",
            "dst/sub/b.txt",
            "dst/sub/deeper/c.txt",
            "src2/keep.txt",
            "srcfile.txt",
        ])
    );
    assert_eq!(c.get("dst/a.txt"), b"a\n");
    assert_eq!(c.get("dst/sub/b.txt"), b"b\n");
    assert_eq!(c.get("dst/sub/deeper/c.txt"), b"c\n");
    assert!(is_dir_marker(&c, "dst"));
    assert!(is_dir_marker(&c, "dst/emptysub"));

    assert_eq!(
        sorted_names(m.path()),
        strings(&["dst", "src2", "srcfile.txt"])
    );
    assert_errno(fs::metadata(m.join("src")), libc::ENOENT, "stat src");
    assert_errno(
        fs::metadata(m.join("src/a.txt")),
        libc::ENOENT,
        "stat src/a.txt",
    );
    assert_eq!(
        sorted_names(&m.join("dst")),
        strings(&["a.txt", "emptysub", "sub"])
    );
    assert_eq!(
        sorted_names(&m.join("dst/sub")),
        strings(&["b.txt", "deeper"])
    );
    assert_eq!(fs::read(m.join("dst/sub/deeper/c.txt")).unwrap(), b"c\n");
    assert!(fs::metadata(m.join("dst/emptysub")).unwrap().is_dir());

    // A directory made through the mount, renamed into another directory.
    fs::create_dir_all(m.join("made/inner")).unwrap();
    fs::write(m.join("made/inner/f.txt"), b"f").unwrap();
    fs::rename(m.join("made"), m.join("dst/made-moved")).unwrap();
    assert_eq!(
        c.list_all("dst/made-moved"),
        strings(&[
            "dst/made-moved",
            "dst/made-moved/inner",
            "dst/made-moved/inner/f.txt"
        ])
    );
    assert!(c.list_all("made").is_empty(), "{:?}", c.list_all("made"));
    assert_eq!(
        fs::read(m.join("dst/made-moved/inner/f.txt")).unwrap(),
        b"f"
    );
    m.unmount();
}

#[test]
fn unlink_of_a_missing_file_fails_enoent() {
    let c = TestContainer::new();
    c.put("dir/present.txt", b"p");
    let m = Mount::new(&c);

    assert_errno(
        fs::remove_file(m.join("missing.txt")),
        libc::ENOENT,
        "unlink missing",
    );
    assert_errno(
        fs::remove_file(m.join("dir/missing.txt")),
        libc::ENOENT,
        "unlink dir/missing",
    );
    assert_errno(
        fs::remove_file(m.join("nodir/missing.txt")),
        libc::ENOENT,
        "unlink nodir/missing",
    );
    // Twice: the second time it is gone.
    fs::remove_file(m.join("dir/present.txt")).unwrap();
    assert_errno(
        fs::remove_file(m.join("dir/present.txt")),
        libc::ENOENT,
        "unlink twice",
    );
    // unlink of a directory is EISDIR (Linux).
    c.put("otherdir/x", b"x");
    assert_errno(
        fs::remove_file(m.join("otherdir")),
        libc::EISDIR,
        "unlink dir",
    );
    assert_eq!(c.list_all(""), strings(&["otherdir/x"]));
    m.unmount();
}

/// Blob names with characters that URL handling tends to break.
const SPECIAL_NAMES: &[&str] = &[
    "dir with space/file #1 %20 ?x+y&z=w.txt",
    "café/naïve 日本.txt",
    "café/sub dir/ünïcödé ☃.md",
    "percent%2Fslash.txt",
    "plus+and&amp=eq.txt",
    "hash#dir/q?.txt",
    "emoji 😀 file.txt",
    "quotes 'single' \"double\".txt",
    "semi;colon,comma@at~tilde$dollar!.txt",
    "trailing space .txt",
];

fn content_for(name: &str) -> Vec<u8> {
    format!("content of <{name}>\n").into_bytes()
}

#[test]
fn special_character_names_from_the_sdk_are_listed_and_read_exactly() {
    let c = TestContainer::new();
    for name in SPECIAL_NAMES {
        c.put(name, &content_for(name));
    }
    let m = Mount::new(&c);

    let mut root = strings(&[
        "dir with space",
        "café",
        "percent%2Fslash.txt",
        "plus+and&amp=eq.txt",
        "hash#dir",
        "emoji 😀 file.txt",
        "quotes 'single' \"double\".txt",
        "semi;colon,comma@at~tilde$dollar!.txt",
        "trailing space .txt",
    ]);
    root.sort();
    assert_eq!(sorted_names(m.path()), root);
    assert_eq!(
        sorted_names(&m.join("dir with space")),
        strings(&["file #1 %20 ?x+y&z=w.txt"])
    );
    assert_eq!(
        sorted_names(&m.join("café")),
        strings(&["naïve 日本.txt", "sub dir"])
    );
    assert_eq!(
        sorted_names(&m.join("café/sub dir")),
        strings(&["ünïcödé ☃.md"])
    );
    assert_eq!(sorted_names(&m.join("hash#dir")), strings(&["q?.txt"]));

    for name in SPECIAL_NAMES {
        assert_eq!(
            fs::read(m.join(name)).unwrap_or_else(|e| panic!("read {name:?}: {e}")),
            content_for(name),
            "content of {name:?}"
        );
    }
    m.unmount();
}

#[test]
fn special_character_names_written_through_the_mount_keep_their_names() {
    let c = TestContainer::new();
    let m = Mount::new(&c);

    fs::create_dir(m.join("nouveau dossier #2 ?&=+%")).unwrap();
    fs::create_dir_all(m.join("café/日本")).unwrap();
    let files = [
        "a+b c%d#e?f&g=h.txt",
        "nouveau dossier #2 ?&=+%/r%C3%A9sum%C3%A9 ?&=+.txt",
        "café/日本/naïve 日本語 ファイル.txt",
        "emoji 😀.txt",
        "percent%2Fslash.txt",
    ];
    for name in files {
        fs::write(m.join(name), content_for(name))
            .unwrap_or_else(|e| panic!("write {name:?}: {e}"));
    }
    // Renamed to another special name.
    fs::rename(m.join("emoji 😀.txt"), m.join("renamed ✓ #1 ?.txt")).unwrap();

    let mut expected = strings(&[
        "a+b c%d#e?f&g=h.txt",
        "café",
        "café/日本",
        "café/日本/naïve 日本語 ファイル.txt",
        "nouveau dossier #2 ?&=+%",
        "nouveau dossier #2 ?&=+%/r%C3%A9sum%C3%A9 ?&=+.txt",
        "percent%2Fslash.txt",
        "renamed ✓ #1 ?.txt",
    ]);
    expected.sort();
    assert_eq!(c.list_all(""), expected);
    for name in files.iter().filter(|n| !n.starts_with("emoji")) {
        assert_eq!(c.get(name), content_for(name), "blob {name:?}");
    }
    assert_eq!(c.get("renamed ✓ #1 ?.txt"), content_for("emoji 😀.txt"));
    assert!(is_dir_marker(&c, "nouveau dossier #2 ?&=+%"));
    assert!(is_dir_marker(&c, "café/日本"));
    m.unmount();
}

#[test]
fn lists_a_directory_with_5100_entries_completely() {
    const N: usize = 5100;
    let c = TestContainer::new();
    let mut expected: Vec<String> = (0..N).map(|i| format!("entry-{i:05}.txt")).collect();
    // A few subdirectories among the files, and a sibling directory that must not leak in.
    for d in ["subdir-a", "subdir-m", "subdir-z"] {
        expected.push(d.to_string());
    }
    let mut blobs: Vec<String> = (0..N).map(|i| format!("big/entry-{i:05}.txt")).collect();
    blobs.extend(
        ["subdir-a/x", "subdir-m/y", "subdir-z/z"]
            .iter()
            .map(|s| format!("big/{s}")),
    );
    blobs.push("big-sibling/not-listed.txt".to_string());

    c.put_many(
        blobs
            .iter()
            .map(|name| (name.clone(), Bytes::from(name.clone().into_bytes())))
            .collect(),
    );
    assert_eq!(c.list_all("big/").len(), blobs.len() - 1);

    let m = Mount::new(&c);
    expected.sort();
    let listed = {
        // Unsorted first: no entry may be listed twice.
        let raw = dir_names(&m.join("big"));
        let mut dedup = raw.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(raw.len(), dedup.len(), "duplicate entries in the listing");
        dedup
    };
    assert_eq!(listed.len(), expected.len());
    assert_eq!(listed, expected);
    // Again (now from whatever the mount cached), and with ls as a user would.
    assert_eq!(sorted_names(&m.join("big")), expected);
    let ls = std::process::Command::new("ls")
        .arg("-1")
        .arg(m.join("big"))
        .output()
        .unwrap();
    assert!(ls.status.success());
    assert_eq!(
        String::from_utf8(ls.stdout).unwrap().lines().count(),
        expected.len()
    );
    assert_eq!(
        fs::read(m.join("big/entry-05099.txt")).unwrap(),
        b"big/entry-05099.txt"
    );
    assert!(fs::metadata(m.join("big/subdir-m")).unwrap().is_dir());
    m.unmount();
}

#[test]
fn prefix_mount_shows_and_writes_only_its_subtree() {
    let c = TestContainer::new();
    c.put("outside.txt", b"outside");
    c.put("some/other.txt", b"other");
    c.put("some/prefixed.txt", b"string-prefix sibling");
    c.put("some/prefix-not/x.txt", b"x");
    c.put("some/prefix/a.txt", b"a in prefix\n");
    c.put("some/prefix/sub/b.txt", b"b in prefix\n");
    let m = Mount::builder(&c).prefix("some/prefix").mount();

    assert_eq!(sorted_names(m.path()), strings(&["a.txt", "sub"]));
    assert_eq!(sorted_names(&m.join("sub")), strings(&["b.txt"]));
    assert_eq!(fs::read(m.join("a.txt")).unwrap(), b"a in prefix\n");
    assert_eq!(fs::read(m.join("sub/b.txt")).unwrap(), b"b in prefix\n");
    for outside in ["outside.txt", "some", "other.txt", "prefixed.txt", "x.txt"] {
        assert_errno(
            fs::metadata(m.join(outside)),
            libc::ENOENT,
            &format!("stat {outside}"),
        );
    }

    fs::write(m.join("new.txt"), b"new in prefix\n").unwrap();
    assert_eq!(c.get("some/prefix/new.txt"), b"new in prefix\n");
    fs::create_dir(m.join("newdir")).unwrap();
    assert!(is_dir_marker(&c, "some/prefix/newdir"));
    let mut f = fs::File::create(m.join("newdir/f.txt")).unwrap();
    f.write_all(b"f").unwrap();
    drop(f);
    assert_eq!(c.get("some/prefix/newdir/f.txt"), b"f");
    fs::rename(m.join("a.txt"), m.join("renamed.txt")).unwrap();
    fs::remove_file(m.join("sub/b.txt")).unwrap();

    assert_eq!(
        c.list_all(""),
        strings(&[
            "outside.txt",
            "some/other.txt",
            "some/prefix-not/x.txt",
            "some/prefix/new.txt",
            "some/prefix/newdir",
            "some/prefix/newdir/f.txt",
            "some/prefix/renamed.txt",
            "some/prefixed.txt",
        ])
    );
    assert_eq!(c.get("some/prefix/renamed.txt"), b"a in prefix\n");
    assert_eq!(c.get("outside.txt"), b"outside");
    assert_eq!(
        sorted_names(m.path()),
        strings(&["new.txt", "newdir", "renamed.txt"])
    );
    m.unmount();
}
