//! The first end-to-end check: mount a container seeded through the SDK, list and read it with
//! plain `std::fs`, write a file through the mount and find it as a blob, unmount.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{dir_names, Mount, TestContainer};

#[test]
fn mount_list_read_write_unmount() {
    let c = TestContainer::new();
    c.put("hello.txt", b"hello world\n");
    c.put("dir/a.txt", b"a\n");

    let m = Mount::new(&c);

    let names: BTreeSet<String> = dir_names(m.path()).into_iter().collect();
    assert!(names.contains("hello.txt"), "root listing: {names:?}");
    assert!(names.contains("dir"), "root listing: {names:?}");
    assert!(m.join("dir").is_dir(), "dir should be a directory");

    assert_eq!(fs::read(m.join("hello.txt")).unwrap(), b"hello world\n");
    assert_eq!(fs::read(m.join("dir/a.txt")).unwrap(), b"a\n");

    let content = b"written through the mount\n";
    fs::write(m.join("new.txt"), content).expect("write new.txt through the mount");
    // close() uploads: the blob is there as soon as the write returns.
    assert_eq!(c.get("new.txt"), content);
    assert_eq!(fs::read(m.join("new.txt")).unwrap(), content);

    m.unmount();
    assert_eq!(c.get("new.txt"), content, "the blob survives the unmount");
}
