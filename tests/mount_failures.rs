//! Mount-time failures (wrong key, bad SAS, missing container, unreachable endpoint, missing
//! mountpoint): each exits non-zero with one clear `azblobfs: ...` line on stderr that never
//! contains a secret. Plus the positive side of the same credentials: a real SAS token and a
//! connection string, each from a file.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    dir_names, endpoint, is_mounted, random_hex, run_mount_expect_failure, Mount, TestContainer,
    ACCOUNT, ACCOUNT_KEY,
};
use tempfile::TempDir;

/// A scratch directory with an empty `mnt/` and room for secret files and a log.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = TempDir::new().unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        Scratch { dir }
    }

    fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("azblobfs.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes `content` to a file only its owner can read, as a careful user would.
    fn secret_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Runs `azblobfs ARGS... --log-file LOG --cache-dir DIR TARGET MNT`, expecting failure.
    /// Returns (exit code, stderr, seconds taken).
    fn fail(&self, args: &[&str], target: &str, mountpoint: &Path) -> (i32, String, f64) {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--log-file".to_string(),
            self.log_path().display().to_string(),
            "--cache-dir".to_string(),
            self.dir.path().join("cache").display().to_string(),
            target.to_string(),
            mountpoint.display().to_string(),
        ]);
        let started = Instant::now();
        let (code, stderr) = run_mount_expect_failure(&all);
        let took = started.elapsed().as_secs_f64();
        assert!(
            !is_mounted(mountpoint),
            "a failed mount must not stay mounted"
        );
        (code, stderr, took)
    }

    /// [`Scratch::fail`] with the emulator's credentials: `--emulator --endpoint ENDPOINT`.
    fn fail_emulator(&self, target: &str, mountpoint: &Path) -> (i32, String, f64) {
        let endpoint = endpoint();
        self.fail(&["--emulator", "--endpoint", &endpoint], target, mountpoint)
    }

    /// Mounts `c` with the credential arguments `args` and `--endpoint ENDPOINT`, expecting an
    /// authentication failure that names the account and `credential`; returns stderr.
    fn fail_auth(&self, c: &TestContainer, args: &[&str], credential: &str) -> String {
        let endpoint = endpoint();
        let mut all = args.to_vec();
        all.extend(["--endpoint", &endpoint]);
        let (code, stderr, _) = self.fail(&all, c.name(), &self.mountpoint());
        assert_one_clear_line(
            code,
            &stderr,
            &["authentication failed", ACCOUNT, credential],
        );
        stderr
    }
}

/// The contract for every failure: exit status non-zero, exactly one non-empty line on
/// stderr, prefixed `azblobfs: `, containing every one of `needles`.
fn assert_one_clear_line(code: i32, stderr: &str, needles: &[&str]) -> String {
    assert_ne!(code, 0, "exit status must be non-zero");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be exactly one line, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(
        line.starts_with("azblobfs: "),
        "the line must start with 'azblobfs: ': {line}"
    );
    for needle in needles {
        assert!(
            line.to_lowercase().contains(&needle.to_lowercase()),
            "stderr line should mention {needle:?}: {line}"
        );
    }
    line.to_string()
}

/// Neither stderr nor the log may contain any of `secrets` (or a long piece of one).
fn assert_no_secret(texts: &[(&str, &str)], secrets: &[&str]) {
    for (what, text) in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} contains a secret:\n{text}");
            // A 12-character window of the secret: catches truncated or partly quoted ones.
            let chars: Vec<char> = secret.chars().collect();
            for window in chars.windows(12).step_by(4) {
                let piece: String = window.iter().collect();
                assert!(
                    !text.contains(&piece),
                    "{what} contains part of a secret ({piece:?}):\n{text}"
                );
            }
        }
    }
}

fn random_key() -> String {
    let bytes = hex::decode(random_hex(128)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn wrong_account_key_fails_with_authentication_error() {
    let c = TestContainer::new();
    let s = Scratch::new();
    let key = random_key();
    assert_ne!(key, ACCOUNT_KEY);
    let key_file = s.secret_file("key", &format!("{key}\n"));
    let stderr = s.fail_auth(
        &c,
        &[
            "--account",
            ACCOUNT,
            "--account-key-file",
            key_file.to_str().unwrap(),
        ],
        "account key",
    );
    assert_no_secret(
        &[("stderr", &stderr), ("log", &s.log())],
        &[&key, ACCOUNT_KEY],
    );
}

#[test]
fn wrongly_signed_sas_token_fails_with_authentication_error() {
    let c = TestContainer::new();
    let s = Scratch::new();
    let sig = format!(
        "{}%3D",
        base64::engine::general_purpose::STANDARD
            .encode(hex::decode(random_hex(64)).unwrap())
            .trim_end_matches('=')
            .replace('+', "%2B")
            .replace('/', "%2F")
    );
    let token = format!(
        "sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&spr=https,http&sig={sig}"
    );
    let token_file = s.secret_file("sas", &format!("?{token}\n"));
    let stderr = s.fail_auth(
        &c,
        &["--sas-token-file", token_file.to_str().unwrap()],
        "SAS token",
    );
    assert_no_secret(&[("stderr", &stderr), ("log", &s.log())], &[&sig]);
    assert!(!stderr.contains("sig="), "stderr shows the token: {stderr}");
}

#[test]
fn missing_container_fails_with_not_found() {
    let s = Scratch::new();
    let name = format!("nosuch{}", random_hex(16));
    let (code, stderr, _) = s.fail_emulator(&name, &s.mountpoint());
    assert_one_clear_line(code, &stderr, &["not found", &format!("'{name}'")]);
    assert_no_secret(&[("stderr", &stderr), ("log", &s.log())], &[ACCOUNT_KEY]);

    // The same with a prefix: the container is still what is missing.
    let (code, stderr, _) = s.fail_emulator(&format!("{name}/some/prefix"), &s.mountpoint());
    assert_one_clear_line(code, &stderr, &["not found", &format!("'{name}'")]);
}

#[test]
fn unreachable_endpoint_fails_with_cannot_reach() {
    let s = Scratch::new();
    let unreachable = "http://127.0.0.1:1/devstoreaccount1";
    let (code, stderr, took) = s.fail(
        &["--emulator", "--endpoint", unreachable],
        "anycontainer",
        &s.mountpoint(),
    );
    let line = assert_one_clear_line(code, &stderr, &["cannot reach", "127.0.0.1:1"]);
    assert_no_secret(&[("stderr", &stderr), ("log", &s.log())], &[ACCOUNT_KEY]);
    // A refused connection is not worth a long wait before telling the user.
    assert!(took < 40.0, "took {took:.1} s to report: {line}");
}

#[test]
fn missing_mountpoint_fails_and_names_it() {
    let c = TestContainer::new();
    let s = Scratch::new();
    let missing = s.dir.path().join("no-such-dir");
    let (code, stderr, _) = s.fail_emulator(c.name(), &missing);
    let line = assert_one_clear_line(code, &stderr, &[missing.to_str().unwrap()]);
    assert!(
        line.contains("No such file or directory")
            || line.contains("does not exist")
            || line.contains("not found"),
        "the line should say the mountpoint does not exist: {line}"
    );
    assert!(!missing.exists(), "the mountpoint must not be created");

    // A mountpoint that is a regular file.
    let file = s.dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let (code, stderr, _) = s.fail_emulator(c.name(), &file);
    assert_one_clear_line(code, &stderr, &[file.to_str().unwrap(), "not a directory"]);
}

#[test]
fn real_sas_token_from_a_file_mounts_reads_and_writes() {
    let c = TestContainer::new();
    c.put("dir/hello.txt", b"hello via SAS\n");
    let s = Scratch::new();
    let token = c.sas_token();
    let token_file = s.secret_file("sas", &format!("{token}\n"));
    let m = Mount::builder(&c)
        .without_emulator_args()
        .arg("--sas-token-file")
        .arg(&token_file)
        .arg("--endpoint")
        .arg(endpoint())
        .mount();

    assert_eq!(
        fs::read(m.join("dir/hello.txt")).unwrap(),
        b"hello via SAS\n"
    );
    assert_eq!(dir_names(&m.join("dir")), vec!["hello.txt"]);
    fs::write(m.join("dir/written.txt"), b"written via SAS\n").unwrap();
    assert_eq!(c.get("dir/written.txt"), b"written via SAS\n");

    let sig = token
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .expect("the token has a signature")
        .to_string();
    let log = m.log();
    m.unmount();
    assert_no_secret(&[("log", &log)], &[&sig]);
}

#[test]
fn connection_string_from_a_file_mounts_reads_and_writes() {
    let c = TestContainer::new();
    c.put("cs.txt", b"via connection string\n");
    let s = Scratch::new();
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
        endpoint()
    );
    let conn_file = s.secret_file("conn", &format!("{conn}\n"));
    let m = Mount::builder(&c)
        .without_emulator_args()
        .arg("--connection-string-file")
        .arg(&conn_file)
        .mount();

    assert_eq!(
        fs::read(m.join("cs.txt")).unwrap(),
        b"via connection string\n"
    );
    fs::write(m.join("new.txt"), b"new\n").unwrap();
    assert_eq!(c.get("new.txt"), b"new\n");
    let log = m.log();
    m.unmount();
    assert_no_secret(&[("log", &log)], &[ACCOUNT_KEY]);
}

#[test]
fn connection_string_with_a_wrong_key_fails_without_showing_it() {
    let c = TestContainer::new();
    let s = Scratch::new();
    let key = random_key();
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={};",
        endpoint()
    );
    let conn_file = s.secret_file("conn", &conn);
    let (code, stderr, _) = s.fail(
        &["--connection-string-file", conn_file.to_str().unwrap()],
        c.name(),
        &s.mountpoint(),
    );
    assert_one_clear_line(code, &stderr, &["authentication failed", ACCOUNT]);
    assert_no_secret(&[("stderr", &stderr), ("log", &s.log())], &[&key]);
}

#[test]
fn failures_do_not_leave_a_daemon_behind() {
    // After a failed mount nothing may keep serving (or holding) the mountpoint.
    let s = Scratch::new();
    let name = format!("nosuch{}", random_hex(16));
    let mountpoint = s.mountpoint();
    let (code, _, _) = s.fail_emulator(&name, &mountpoint);
    assert_ne!(code, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::daemon_pids(&mountpoint).is_empty() {
        assert!(
            Instant::now() < deadline,
            "azblobfs processes still running for {}: {:?}",
            mountpoint.display(),
            common::daemon_pids(&mountpoint)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the mountpoint is usable for a real mount right after.
    let c = TestContainer::new();
    c.put("ok.txt", b"ok");
    let m = Mount::new(&c);
    assert_eq!(fs::read(m.join("ok.txt")).unwrap(), b"ok");
    m.unmount();
}
