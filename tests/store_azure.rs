//! Integration tests of `AzureStore` against a real Azurite.
//!
//! They read the blob endpoint from `AZBLOBFS_TEST_ENDPOINT` (e.g.
//! `http://127.0.0.1:10000/devstoreaccount1`; the project's test script always sets it) and
//! use the emulator's well-known account key. Without the variable the tests that need Azurite
//! print a line and return, so a plain `cargo test` stays usable on a machine without Azurite.
//! Each test works in a fresh container and deletes it at the end.

mod common;

use std::time::{Duration, SystemTime};

use azblobfs::store::azure::AzureStore;
use azblobfs::store::{BlobStore, Credentials, StoreConfig, StoreError, WriteCondition};
use bytes::Bytes;
use common::{random_hex, try_endpoint, ACCOUNT, ACCOUNT_KEY, ENDPOINT_VAR};

/// Nothing listens on port 1: connections are refused at once.
const UNREACHABLE_ENDPOINT: &str = "http://127.0.0.1:1/devstoreaccount1";

fn test_endpoint(test: &str) -> Option<String> {
    let endpoint = try_endpoint();
    if endpoint.is_none() {
        println!("{test}: {ENDPOINT_VAR} is unset, skipping (needs Azurite)");
    }
    endpoint
}

/// `t-` and 16 random hex digits: a valid container name, unique per test and run.
fn unique_container() -> String {
    format!("t-{}", random_hex(16))
}

fn config(endpoint: &str, container: &str, credentials: Credentials) -> StoreConfig {
    StoreConfig {
        endpoint: endpoint.to_owned(),
        container: container.to_owned(),
        credentials,
    }
}

fn key_store(endpoint: &str, container: &str) -> AzureStore {
    let creds = Credentials::AccountKey {
        account: ACCOUNT.to_owned(),
        key: ACCOUNT_KEY.to_owned(),
    };
    AzureStore::new(&config(endpoint, container, creds)).expect("valid store config")
}

/// A fresh container, deleted by `cleanup`.
struct Fixture {
    endpoint: String,
    container: String,
    store: AzureStore,
}

impl Fixture {
    /// The fixture of `test`, or `None` (the test is skipped) when there is no Azurite.
    async fn for_test(test: &str) -> Option<Fixture> {
        Some(Fixture::new(test_endpoint(test)?).await)
    }

    async fn new(endpoint: String) -> Fixture {
        let container = unique_container();
        let store = key_store(&endpoint, &container);
        store.create_container().await.expect("create container");
        Fixture {
            endpoint,
            container,
            store,
        }
    }

    async fn cleanup(self) {
        self.store
            .delete_container()
            .await
            .expect("delete container");
    }
}

/// Deterministic, non-repeating-looking content.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

async fn put(store: &AzureStore, name: &str, body: impl Into<Bytes>) {
    store
        .put(name, body.into(), &WriteCondition::None)
        .await
        .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
}

async fn read_all(store: &AzureStore, name: &str) -> Bytes {
    let size = store.properties(name).await.expect("properties").size;
    store
        .get_range(name, 0..size, None)
        .await
        .unwrap_or_else(|e| panic!("get {name:?}: {e}"))
}

/// Every blob name and prefix under `prefix`, following markers, and the number of pages.
async fn list_all(
    store: &AzureStore,
    prefix: &str,
    delimiter: Option<&str>,
    max_results: u32,
) -> (Vec<String>, Vec<String>, usize) {
    let mut blobs = Vec::new();
    let mut prefixes = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(prefix, delimiter, marker.take(), max_results)
            .await
            .expect("list");
        pages += 1;
        assert!(
            page.blobs.len() + page.prefixes.len() <= max_results as usize,
            "a page holds at most max_results entries"
        );
        blobs.extend(page.blobs.into_iter().map(|b| b.name));
        prefixes.extend(page.prefixes);
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
        assert!(pages < 100, "listing does not terminate");
    }
    (blobs, prefixes, pages)
}

#[tokio::test]
async fn describe_never_shows_credentials() {
    let store = key_store("http://127.0.0.1:10000/devstoreaccount1/", "ctr");
    assert_eq!(
        store.describe(),
        "http://127.0.0.1:10000/devstoreaccount1/ctr"
    );
    let debug = format!("{store:?}");
    assert!(!debug.contains(ACCOUNT_KEY), "{debug}");

    let sas = Credentials::SasToken {
        account: ACCOUNT.to_owned(),
        token: "?sv=2022-11-02&sp=rl&sr=c&se=2030-01-01T00%3A00%3A00Z&sig=c2VjcmV0c2lnbmF0dXJl"
            .to_owned(),
    };
    let store = AzureStore::new(&config("https://acct.blob.core.windows.net", "c", sas))
        .expect("SAS store");
    assert_eq!(store.describe(), "https://acct.blob.core.windows.net/c");
    assert!(!format!("{store:?}").contains("c2VjcmV0"));
}

#[tokio::test]
async fn bad_configuration_is_rejected_without_echoing_secrets() {
    let bad_key = Credentials::AccountKey {
        account: ACCOUNT.to_owned(),
        key: "not base64 !!!".to_owned(),
    };
    let err = AzureStore::new(&config(UNREACHABLE_ENDPOINT, "c", bad_key)).unwrap_err();
    assert!(!err.to_string().contains("not base64 !!!"), "{err}");

    let anon = || Credentials::Anonymous {
        account: ACCOUNT.to_owned(),
    };
    let err = AzureStore::new(&config(
        "http://127.0.0.1:1/devstoreaccount1?sig=SECRETSIG",
        "c",
        anon(),
    ))
    .unwrap_err();
    assert!(!err.to_string().contains("SECRETSIG"), "{err}");
    assert!(AzureStore::new(&config("ftp://127.0.0.1/x", "c", anon())).is_err());
    assert!(AzureStore::new(&config("not a url", "c", anon())).is_err());

    // A SAS can only be minted from an account key.
    let store = AzureStore::new(&config(UNREACHABLE_ENDPOINT, "c", anon())).expect("anon store");
    assert!(store.container_sas_token(Duration::from_secs(60)).is_err());
    assert!(store.container_sas_url(Duration::from_secs(60)).is_err());
}

#[tokio::test]
async fn unreachable_endpoint_is_reported_as_unreachable() {
    // Needs no Azurite: nothing listens on port 1. The retry bound lives in azure.rs.
    let store = key_store(UNREACHABLE_ENDPOINT, "c");
    match store.check_container().await {
        Err(StoreError::Unreachable { endpoint, reason }) => {
            assert_eq!(endpoint, UNREACHABLE_ENDPOINT);
            assert!(!reason.is_empty());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }

    // With a SAS the request URL (which the SDK quotes in its error) carries the token.
    let sas = Credentials::SasToken {
        account: ACCOUNT.to_owned(),
        token: "sv=2022-11-02&sp=rl&sr=c&se=2030-01-01T00%3A00%3A00Z&sig=U0VDUkVUU0lHTkFUVVJF"
            .to_owned(),
    };
    let store = AzureStore::new(&config(UNREACHABLE_ENDPOINT, "c", sas)).expect("SAS store");
    let err = store.properties("some blob").await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("U0VDUkVU"), "{text}");
    assert!(!text.contains("sp=rl"), "{text}");
}

#[tokio::test]
async fn list_pages_and_folds_prefixes() {
    let Some(fx) = Fixture::for_test("list_pages_and_folds_prefixes").await else {
        return;
    };
    let s = &fx.store;
    let mut expected: Vec<String> = (0..12).map(|i| format!("dir/f{i:02}")).collect();
    for name in &expected {
        put(s, name, Bytes::from(name.clone())).await;
    }
    put(s, "dir/sub/x", "x").await;
    put(s, "top.txt", "top").await;

    let (blobs, prefixes, pages) = list_all(s, "dir/", Some("/"), 5).await;
    assert_eq!(blobs, expected);
    assert_eq!(prefixes, vec!["dir/sub/".to_owned()]);
    assert!(
        pages >= 3,
        "13 entries in pages of 5 take 3 pages, got {pages}"
    );

    let (blobs, prefixes, _) = list_all(s, "", Some("/"), 5000).await;
    assert_eq!(blobs, vec!["top.txt".to_owned()]);
    assert_eq!(prefixes, vec!["dir/".to_owned()]);

    let (blobs, prefixes, _) = list_all(s, "", None, 4).await;
    expected.push("dir/sub/x".to_owned());
    expected.push("top.txt".to_owned());
    assert_eq!(blobs, expected);
    assert!(prefixes.is_empty());

    let page = s
        .list("nothing-here/", Some("/"), None, 10)
        .await
        .expect("list");
    assert!(page.blobs.is_empty() && page.prefixes.is_empty() && page.next_marker.is_none());

    // Listed properties agree with a HEAD, ETag format included.
    let page = s.list("top.txt", None, None, 10).await.expect("list");
    let listed = &page.blobs[0];
    let head = s.properties("top.txt").await.expect("properties");
    assert_eq!(listed, &head);
    assert_eq!(listed.size, 3);
    fx.cleanup().await;
}

#[tokio::test]
async fn directory_markers_are_recognised() {
    let Some(fx) = Fixture::for_test("directory_markers_are_recognised").await else {
        return;
    };
    let s = &fx.store;
    let marker = s.put_dir_marker("d").await.expect("put_dir_marker");
    put(s, "d/file", "content").await;
    put(s, "empty", Bytes::new()).await;

    let page = s.list("", Some("/"), None, 100).await.expect("list");
    let d = page
        .blobs
        .iter()
        .find(|b| b.name == "d")
        .expect("marker listed");
    assert!(d.is_dir_marker);
    assert_eq!(d.size, 0);
    assert_eq!(d.etag, marker.etag);
    let empty = page
        .blobs
        .iter()
        .find(|b| b.name == "empty")
        .expect("listed");
    assert!(!empty.is_dir_marker, "a plain 0-byte blob is a file");
    assert_eq!(page.prefixes, vec!["d/".to_owned()]);

    let props = s.properties("d").await.expect("properties");
    assert!(props.is_dir_marker);
    assert!(
        !s.properties("empty")
            .await
            .expect("properties")
            .is_dir_marker
    );
    assert!(
        !s.properties("d/file")
            .await
            .expect("properties")
            .is_dir_marker
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn properties_and_not_found() {
    let Some(fx) = Fixture::for_test("properties_and_not_found").await else {
        return;
    };
    let s = &fx.store;
    s.check_container().await.expect("container exists");
    // Creating it again is fine.
    s.create_container().await.expect("create is idempotent");

    let before = SystemTime::now() - Duration::from_secs(120);
    let w = s
        .put("a.txt", Bytes::from_static(b"hello"), &WriteCondition::None)
        .await
        .expect("put");
    assert!(
        w.etag.starts_with('"') && w.etag.ends_with('"'),
        "{}",
        w.etag
    );
    let p = s.properties("a.txt").await.expect("properties");
    assert_eq!(p.name, "a.txt");
    assert_eq!(p.size, 5);
    assert_eq!(p.etag, w.etag);
    assert_eq!(p.last_modified, w.last_modified);
    assert!(p.last_modified > before);
    assert!(!p.is_dir_marker);

    match s.properties("missing").await {
        Err(StoreError::NotFound { code }) => assert_eq!(code, "BlobNotFound"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(s
        .get_range("missing", 0..10, None)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(s.delete("missing").await.unwrap_err().is_not_found());

    let gone = key_store(&fx.endpoint, &unique_container());
    match gone.check_container().await {
        Err(StoreError::NotFound { code }) => assert_eq!(code, "ContainerNotFound"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(gone.properties("a.txt").await.unwrap_err().is_not_found());
    assert!(gone
        .list("", Some("/"), None, 10)
        .await
        .unwrap_err()
        .is_not_found());
    fx.cleanup().await;
}

#[tokio::test]
async fn ranged_reads() {
    let Some(fx) = Fixture::for_test("ranged_reads").await else {
        return;
    };
    let s = &fx.store;
    let data = pattern(10_000, 7);
    let w = s
        .put("r.bin", data.clone(), &WriteCondition::None)
        .await
        .expect("put");

    for range in [
        0..4096u64,
        4096..8192,
        8192..10_000,
        9_999..10_000,
        123..124,
    ] {
        let got = s
            .get_range("r.bin", range.clone(), Some(&w.etag))
            .await
            .expect("get_range");
        assert_eq!(got, data.slice(range.start as usize..range.end as usize));
    }
    // A range running past the end returns what exists.
    let tail = s
        .get_range("r.bin", 9_000..20_000, None)
        .await
        .expect("tail");
    assert_eq!(tail, data.slice(9_000..));
    // Callers never ask for nothing; no request is sent for it.
    assert!(s
        .get_range("r.bin", 5..5, None)
        .await
        .expect("empty")
        .is_empty());

    // An ETag from a listing works for If-Match too.
    let listed = s.list("r.bin", None, None, 1).await.expect("list").blobs;
    let got = s
        .get_range("r.bin", 0..10, Some(&listed[0].etag))
        .await
        .expect("if-match with listed etag");
    assert_eq!(got, data.slice(0..10));

    match s
        .get_range("r.bin", 0..10, Some("\"0x8DEADBEEF000000\""))
        .await
    {
        Err(StoreError::PreconditionFailed { status, .. }) => assert_eq!(status, 412),
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }

    // Above 4 MiB the SDK asks for no CRC64, and one call is still one response.
    let big = pattern(5 * 1024 * 1024 + 17, 3);
    put(s, "big.bin", big.clone()).await;
    assert_eq!(read_all(s, "big.bin").await, big);
    let mid = s
        .get_range("big.bin", 1_000_000..5_000_000, None)
        .await
        .expect("mid");
    assert_eq!(mid, big.slice(1_000_000..5_000_000));
    fx.cleanup().await;
}

#[tokio::test]
async fn conditional_writes() {
    let Some(fx) = Fixture::for_test("conditional_writes").await else {
        return;
    };
    let s = &fx.store;
    let first = s
        .put(
            "c.txt",
            Bytes::from_static(b"one"),
            &WriteCondition::DoesNotExist,
        )
        .await
        .expect("create");
    match s
        .put(
            "c.txt",
            Bytes::from_static(b"two"),
            &WriteCondition::DoesNotExist,
        )
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match s
        .put(
            "c.txt",
            Bytes::from_static(b"two"),
            &WriteCondition::Matches("\"0x8DEADBEEF000000\"".to_owned()),
        )
        .await
    {
        Err(StoreError::PreconditionFailed { .. }) => {}
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    assert_eq!(read_all(s, "c.txt").await, Bytes::from_static(b"one"));

    let second = s
        .put(
            "c.txt",
            Bytes::from_static(b"two"),
            &WriteCondition::Matches(first.etag.clone()),
        )
        .await
        .expect("matching etag");
    assert_ne!(second.etag, first.etag);
    assert_eq!(read_all(s, "c.txt").await, Bytes::from_static(b"two"));

    // If-Match on a blob that is gone: it changed remotely.
    match s
        .put(
            "never-existed.txt",
            Bytes::from_static(b"x"),
            &WriteCondition::Matches(first.etag.clone()),
        )
        .await
    {
        Err(StoreError::PreconditionFailed { .. }) => {}
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }

    // The same conditions on a block-list commit.
    s.put_block("c.txt", "b0", Bytes::from_static(b"three"))
        .await
        .expect("put_block");
    match s
        .put_block_list("c.txt", &["b0".to_owned()], &WriteCondition::DoesNotExist)
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match s
        .put_block_list(
            "c.txt",
            &["b0".to_owned()],
            &WriteCondition::Matches(first.etag.clone()),
        )
        .await
    {
        Err(StoreError::PreconditionFailed { .. }) => {}
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    s.put_block_list(
        "c.txt",
        &["b0".to_owned()],
        &WriteCondition::Matches(second.etag.clone()),
    )
    .await
    .expect("commit with matching etag");
    assert_eq!(read_all(s, "c.txt").await, Bytes::from_static(b"three"));
    fx.cleanup().await;
}

#[tokio::test]
async fn block_upload_round_trip() {
    let Some(fx) = Fixture::for_test("block_upload_round_trip").await else {
        return;
    };
    let s = &fx.store;
    let blocks = [pattern(300_000, 1), pattern(300_000, 2), pattern(12_345, 3)];
    let ids: Vec<String> = (0..blocks.len()).map(|i| format!("block-{i:06}")).collect();
    for (id, body) in ids.iter().zip(&blocks) {
        s.put_block("blocks/b.bin", id, body.clone())
            .await
            .expect("put_block");
    }
    // Staged blocks are not a blob yet.
    assert!(s
        .properties("blocks/b.bin")
        .await
        .unwrap_err()
        .is_not_found());

    let w = s
        .put_block_list("blocks/b.bin", &ids, &WriteCondition::DoesNotExist)
        .await
        .expect("put_block_list");
    let p = s.properties("blocks/b.bin").await.expect("properties");
    assert_eq!(p.etag, w.etag);
    assert_eq!(p.size, blocks.iter().map(|b| b.len() as u64).sum::<u64>());
    let expected: Vec<u8> = blocks.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(read_all(s, "blocks/b.bin").await, Bytes::from(expected));
    fx.cleanup().await;
}

#[tokio::test]
async fn copy_and_delete() {
    let Some(fx) = Fixture::for_test("copy_and_delete").await else {
        return;
    };
    let s = &fx.store;
    let data = pattern(100_000, 9);
    put(s, "src dir/a.bin", data.clone()).await;
    let w = s.copy("src dir/a.bin", "dst/b.bin").await.expect("copy");
    let p = s.properties("dst/b.bin").await.expect("properties");
    assert_eq!(p.etag, w.etag);
    assert_eq!(read_all(s, "dst/b.bin").await, data);
    // The source is untouched.
    assert_eq!(read_all(s, "src dir/a.bin").await, data);

    assert!(s
        .copy("missing", "dst/c.bin")
        .await
        .unwrap_err()
        .is_not_found());

    s.delete("src dir/a.bin").await.expect("delete");
    assert!(s
        .properties("src dir/a.bin")
        .await
        .unwrap_err()
        .is_not_found());
    assert!(s.delete("src dir/a.bin").await.unwrap_err().is_not_found());
    fx.cleanup().await;
}

#[tokio::test]
async fn special_character_names_round_trip() {
    let Some(fx) = Fixture::for_test("special_character_names_round_trip").await else {
        return;
    };
    let s = &fx.store;
    let mut names: Vec<String> = [
        "ünïcödé/файл.txt",
        "with space.txt",
        "per%cent%20.txt",
        "hash#tag.txt",
        "question?.txt",
        "plus+sign.txt",
        "amp&ersand=eq.txt",
        "emoji 😀.bin",
        "dir with space/a b#c?d%e+f&g=h;i,j'k(l)m[n]~.txt",
        "日本語/テスト.md",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        put(s, name, pattern(100 + i, i as u8)).await;
    }
    let (listed, _, _) = list_all(s, "", None, 5000).await;
    assert_eq!(listed, names);
    for (i, name) in names.iter().enumerate() {
        let p = s
            .properties(name)
            .await
            .unwrap_or_else(|e| panic!("properties {name:?}: {e}"));
        assert_eq!(p.name, *name);
        assert_eq!(p.size, 100 + i as u64);
        let got = s
            .get_range(name, 10..20, Some(&p.etag))
            .await
            .unwrap_or_else(|e| panic!("get {name:?}: {e}"));
        assert_eq!(got, pattern(100 + i, i as u8).slice(10..20));
    }
    // Prefixes with special characters travel in the query string.
    let (blobs, _, _) = list_all(s, "dir with space/a b#c?d%", Some("/"), 10).await;
    assert_eq!(
        blobs,
        vec!["dir with space/a b#c?d%e+f&g=h;i,j'k(l)m[n]~.txt".to_owned()]
    );
    let (_, prefixes, _) = list_all(s, "", Some("/"), 100).await;
    assert!(prefixes.contains(&"ünïcödé/".to_owned()), "{prefixes:?}");

    let copied = format!("{}-copy", names[0]);
    s.copy(&names[0], &copied).await.expect("copy special name");
    s.delete(&copied).await.expect("delete copy");
    for name in &names {
        s.delete(name)
            .await
            .unwrap_or_else(|e| panic!("delete {name:?}: {e}"));
    }
    let (left, _, _) = list_all(s, "", None, 5000).await;
    assert!(left.is_empty(), "{left:?}");
    fx.cleanup().await;
}

#[tokio::test]
async fn wrong_key_is_auth_failure() {
    let Some(fx) = Fixture::for_test("wrong_key_is_auth_failure").await else {
        return;
    };
    put(&fx.store, "a.txt", "a").await;
    let wrong_key = Credentials::AccountKey {
        account: ACCOUNT.to_owned(),
        // Valid base64, wrong key.
        key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
            .to_owned(),
    };
    let bad = AzureStore::new(&config(&fx.endpoint, &fx.container, wrong_key)).expect("store");
    for result in [
        bad.check_container().await,
        bad.properties("a.txt").await.map(|_| ()),
        bad.get_range("a.txt", 0..1, None).await.map(|_| ()),
        bad.put("b.txt", Bytes::from_static(b"b"), &WriteCondition::None)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(StoreError::AuthFailed { status, .. }) => assert!(status == 401 || status == 403),
            other => panic!("expected AuthFailed, got {other:?}"),
        }
    }
    fx.cleanup().await;
}

#[tokio::test]
async fn container_sas_works() {
    let Some(fx) = Fixture::for_test("container_sas_works").await else {
        return;
    };
    put(&fx.store, "seed.txt", "seed").await;

    let token = fx
        .store
        .container_sas_token(Duration::from_secs(3600))
        .expect("sas token");
    assert!(token.contains("sig=") && !token.starts_with('?'), "{token}");
    let url = fx
        .store
        .container_sas_url(Duration::from_secs(3600))
        .expect("sas url");
    let prefix = format!("{}/{}?", fx.endpoint, fx.container);
    assert!(url.starts_with(&prefix), "{url}");

    // With and without the leading '?'.
    for token in [token.clone(), format!("?{token}")] {
        let creds = Credentials::SasToken {
            account: ACCOUNT.to_owned(),
            token,
        };
        let sas = AzureStore::new(&config(&fx.endpoint, &fx.container, creds)).expect("store");
        sas.check_container().await.expect("check with SAS");
        let w = sas
            .put(
                "sas dir/x+y.txt",
                Bytes::from_static(b"via sas"),
                &WriteCondition::None,
            )
            .await
            .expect("put with SAS");
        let page = sas
            .list("", Some("/"), None, 100)
            .await
            .expect("list with SAS");
        assert!(page.blobs.iter().any(|b| b.name == "seed.txt"));
        assert_eq!(page.prefixes, vec!["sas dir/".to_owned()]);
        assert_eq!(
            read_all(&sas, "seed.txt").await,
            Bytes::from_static(b"seed")
        );
        let got = sas
            .get_range("sas dir/x+y.txt", 0..7, Some(&w.etag))
            .await
            .expect("get with SAS");
        assert_eq!(got, Bytes::from_static(b"via sas"));
        sas.put_block("blk", "id-0", Bytes::from_static(b"blk"))
            .await
            .expect("put_block with SAS");
        sas.put_block_list("blk", &["id-0".to_owned()], &WriteCondition::None)
            .await
            .expect("put_block_list with SAS");
        sas.put_dir_marker("marker").await.expect("marker with SAS");
        sas.copy("sas dir/x+y.txt", "sas copy.txt")
            .await
            .expect("copy with SAS");
        assert_eq!(
            read_all(&sas, "sas copy.txt").await,
            Bytes::from_static(b"via sas")
        );
        for name in ["sas dir/x+y.txt", "blk", "marker", "sas copy.txt"] {
            sas.delete(name).await.expect("delete with SAS");
        }
        let err = sas.properties("missing").await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }

    // A SAS for another container is refused.
    let other = key_store(&fx.endpoint, &unique_container());
    let foreign = other
        .container_sas_token(Duration::from_secs(3600))
        .expect("token");
    let creds = Credentials::SasToken {
        account: ACCOUNT.to_owned(),
        token: foreign.clone(),
    };
    let sas = AzureStore::new(&config(&fx.endpoint, &fx.container, creds)).expect("store");
    let err = sas.check_container().await.unwrap_err();
    assert!(matches!(err, StoreError::AuthFailed { .. }), "{err:?}");
    let sig = foreign
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .unwrap_or_default();
    let text = format!("{err} {err:?}");
    assert!(!sig.is_empty() && !text.contains(sig), "{text}");
    fx.cleanup().await;
}

#[tokio::test]
async fn anonymous_access_to_public_container() {
    let Some(endpoint) = test_endpoint("anonymous_access_to_public_container") else {
        return;
    };
    let container = unique_container();
    let owner = key_store(&endpoint, &container);
    owner
        .create_container_public()
        .await
        .expect("create public container");
    owner.create_container_public().await.expect("idempotent");
    put(&owner, "pub/a.txt", "public data").await;

    let anon = AzureStore::new(&config(
        &endpoint,
        &container,
        Credentials::Anonymous {
            account: ACCOUNT.to_owned(),
        },
    ))
    .expect("anonymous store");
    anon.check_container().await.expect("anonymous check");
    let page = anon
        .list("", Some("/"), None, 10)
        .await
        .expect("anonymous list");
    assert_eq!(page.prefixes, vec!["pub/".to_owned()]);
    assert_eq!(
        read_all(&anon, "pub/a.txt").await,
        Bytes::from_static(b"public data")
    );
    assert!(anon
        .put("pub/b.txt", Bytes::from_static(b"x"), &WriteCondition::None)
        .await
        .is_err());

    // Once private again, anonymous requests fail.
    owner.set_public_access(false).await.expect("make private");
    let err = anon.check_container().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AuthFailed { .. } | StoreError::NotFound { .. }
        ),
        "{err:?}"
    );
    owner.delete_container().await.expect("delete container");
}
