//! Reading through a real mount: blobs written with the SDK are listed and read back with
//! plain `std::fs` (and Python), exactly as a user of the mounted directory would.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;

use common::{python3, random_bytes, sha256_hex, sorted_names, strings, Mount, TestContainer};
use sha2::{Digest, Sha256};

#[test]
fn lists_nested_directories_and_reads_exact_content() {
    let c = TestContainer::new();
    let blobs: &[(&str, &[u8])] = &[
        ("a.txt", b"alpha\n"),
        ("b.bin", b"\x00\x01\x02\xff\xfe binary\r\n"),
        ("dir1/x.txt", b"x in dir1\n"),
        ("dir1/sub/y.txt", b"y in dir1/sub\n"),
        ("dir1/sub/deeper/z.txt", b"z, three levels down\n"),
        ("dir1/sub/deeper/zz.txt", b"zz\n"),
        ("dir2/w.txt", b"w in dir2\n"),
    ];
    for (name, data) in blobs {
        c.put(name, data);
    }
    let m = Mount::new(&c);

    assert_eq!(
        sorted_names(m.path()),
        strings(&["a.txt", "b.bin", "dir1", "dir2"])
    );
    assert_eq!(sorted_names(&m.join("dir1")), strings(&["sub", "x.txt"]));
    assert_eq!(
        sorted_names(&m.join("dir1/sub")),
        strings(&["deeper", "y.txt"])
    );
    assert_eq!(
        sorted_names(&m.join("dir1/sub/deeper")),
        strings(&["z.txt", "zz.txt"])
    );
    assert_eq!(sorted_names(&m.join("dir2")), strings(&["w.txt"]));

    // Entry types as read_dir reports them, and as stat reports them.
    for entry in fs::read_dir(m.join("dir1")).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        match entry.file_name().to_str().unwrap() {
            "sub" => assert!(ty.is_dir(), "dir1/sub should be a directory"),
            "x.txt" => assert!(ty.is_file(), "dir1/x.txt should be a file"),
            other => panic!("unexpected entry dir1/{other}"),
        }
    }
    for dir in ["dir1", "dir1/sub", "dir1/sub/deeper", "dir2"] {
        assert!(
            fs::metadata(m.join(dir)).unwrap().is_dir(),
            "{dir} is a dir"
        );
    }

    for (name, data) in blobs {
        let meta = fs::metadata(m.join(name)).unwrap();
        assert!(meta.is_file(), "{name} should be a regular file");
        assert_eq!(meta.len(), data.len() as u64, "size of {name}");
        assert_eq!(fs::read(m.join(name)).unwrap(), *data, "content of {name}");
    }

    // A name that does not exist is ENOENT, at the root and below.
    for missing in ["nope.txt", "dir1/nope", "dir1/sub/deeper/nope"] {
        let err = fs::metadata(m.join(missing)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "stat {missing}");
    }
    m.unmount();
}

#[test]
fn zero_byte_blob_is_an_empty_file() {
    let c = TestContainer::new();
    c.put("empty.dat", b"");
    c.put("dir/also-empty", b"");
    let m = Mount::new(&c);

    for name in ["empty.dat", "dir/also-empty"] {
        let meta = fs::metadata(m.join(name)).unwrap();
        assert!(meta.is_file(), "{name} should be a file, not a directory");
        assert_eq!(meta.len(), 0, "size of {name}");
        assert_eq!(
            fs::read(m.join(name)).unwrap(),
            Vec::<u8>::new(),
            "content of {name}"
        );
        // A read at an offset past the end of an empty file returns 0 bytes, no error.
        let f = fs::File::open(m.join(name)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(f.read_at(&mut buf, 10).unwrap(), 0);
    }
    assert_eq!(sorted_names(m.path()), strings(&["dir", "empty.dat"]));
    m.unmount();
}

#[test]
fn reads_a_64_mib_blob_byte_exact() {
    const SIZE: usize = 64 << 20;
    let c = TestContainer::new();
    let data = random_bytes(SIZE, 0x64_4d_69_42);
    let expected_hash = sha256_hex(&data);
    c.put("big/random.bin", &data);
    assert_eq!(c.size("big/random.bin"), SIZE as u64);
    let m = Mount::new(&c);
    let path = m.join("big/random.bin");

    assert_eq!(fs::metadata(&path).unwrap().len(), SIZE as u64);

    // Sequential read in 1 MiB pieces, as cat would, hashing as we go.
    let mut f = fs::File::open(&path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let mut first_mismatch = None;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if first_mismatch.is_none() && buf[..n] != data[total..total + n] {
            let at = buf[..n]
                .iter()
                .zip(&data[total..total + n])
                .position(|(a, b)| a != b)
                .unwrap();
            first_mismatch = Some(total + at);
        }
        hasher.update(&buf[..n]);
        total += n;
    }
    assert_eq!(total, SIZE, "bytes read through the mount");
    assert_eq!(first_mismatch, None, "first differing byte offset");
    assert_eq!(hex::encode(hasher.finalize()), expected_hash);
    drop(f);

    // Random access (pread) at unaligned offsets, including the very end.
    let f = fs::File::open(&path).unwrap();
    for &(offset, len) in &[
        (0usize, 17usize),
        (4095, 3),
        (SIZE / 2 - 7, 100_000),
        (33 * 1024 * 1024 + 1, 5 << 20),
        (SIZE - 10, 10),
    ] {
        let mut got = vec![0u8; len];
        f.read_exact_at(&mut got, offset as u64).unwrap();
        assert!(
            got == data[offset..offset + len],
            "pread of {len} bytes at {offset} differs"
        );
    }
    let mut past_end = [0u8; 8];
    assert_eq!(f.read_at(&mut past_end, SIZE as u64).unwrap(), 0);
    drop(f);

    // And once more in one go (now possibly from the cache).
    let again = fs::read(&path).unwrap();
    assert_eq!(again.len(), SIZE);
    assert_eq!(sha256_hex(&again), expected_hash);
    m.unmount();
}

#[test]
fn directory_markers_are_directories_never_files() {
    let c = TestContainer::new();
    c.put_dir_marker("empty");
    c.put_dir_marker("full");
    c.put("full/inside.txt", b"inside\n");
    c.put_dir_marker("a");
    c.put_dir_marker("a/b");
    c.put_dir_marker("a/b/c");
    c.put("plain.txt", b"plain\n");
    let m = Mount::new(&c);

    // A marker and the prefix of the same name are one directory, listed once.
    assert_eq!(
        sorted_names(m.path()),
        strings(&["a", "empty", "full", "plain.txt"])
    );
    for entry in fs::read_dir(m.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let expect_dir = name != "plain.txt";
        assert_eq!(
            entry.file_type().unwrap().is_dir(),
            expect_dir,
            "read_dir type of {name}"
        );
    }
    for dir in ["empty", "full", "a", "a/b", "a/b/c"] {
        let meta = fs::metadata(m.join(dir)).unwrap();
        assert!(meta.is_dir(), "{dir} must be a directory");
        assert!(!meta.is_file(), "{dir} must not be a file");
        // Reading a directory as a file is EISDIR.
        let err = fs::read(m.join(dir)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR), "read of {dir}");
    }
    assert_eq!(sorted_names(&m.join("empty")), Vec::<String>::new());
    assert_eq!(sorted_names(&m.join("full")), strings(&["inside.txt"]));
    assert_eq!(sorted_names(&m.join("a")), strings(&["b"]));
    assert_eq!(sorted_names(&m.join("a/b")), strings(&["c"]));
    assert_eq!(sorted_names(&m.join("a/b/c")), Vec::<String>::new());
    assert_eq!(fs::read(m.join("full/inside.txt")).unwrap(), b"inside\n");
    m.unmount();
}

#[test]
fn python_reads_a_csv_through_the_mount() {
    let c = TestContainer::new();
    let mut csv = String::from("id,name,amount\n");
    let mut expected: i64 = 0;
    for i in 1..=250i64 {
        let amount = (i * 37) % 1000 - 100;
        expected += amount;
        // Quoted fields with commas: the csv module must see whole, unmangled bytes.
        csv.push_str(&format!("{i},\"item {i}, café\",{amount}\n"));
    }
    c.put("reports/2024/sales data.csv", csv.as_bytes());
    let m = Mount::new(&c);

    let script = "import csv, sys\n\
                  with open(sys.argv[1], newline='', encoding='utf-8') as f:\n    \
                  rows = list(csv.DictReader(f))\n\
                  print(len(rows), sum(int(r['amount']) for r in rows))";
    let out = python3(script, &[m.join("reports/2024/sales data.csv")], "python3");
    assert_eq!(out.trim(), format!("250 {expected}"));
    m.unmount();
}
