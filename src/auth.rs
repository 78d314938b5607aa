//! Resolving credentials and the blob service endpoint from the command line, secret files and
//! the environment. No SDK here: connection strings are parsed by hand so that all SDK use stays
//! in `store::azure`.
//!
//! # Precedence
//!
//! The first method that is given wins; the others are ignored (with a warning in the log for
//! ignored command-line flags):
//!
//! 1. A connection string: `--connection-string-file FILE`, else env
//!    `AZURE_STORAGE_CONNECTION_STRING`. Its `AccountKey` (preferred) or `SharedAccessSignature`
//!    is used, or the emulator with `UseDevelopmentStorage=true`. Endpoint: `--endpoint` if
//!    given, else `BlobEndpoint`, else `{DefaultEndpointsProtocol}://{AccountName}.blob.
//!    {EndpointSuffix}` (defaults `https` and `core.windows.net`).
//! 2. An account key: `--account-key-file FILE`, else env `AZURE_STORAGE_KEY`, else env
//!    `AZURE_STORAGE_ACCESS_KEY`.
//! 3. A SAS token: `--sas-token-file FILE`, else env `AZURE_STORAGE_SAS_TOKEN`.
//! 4. `--anonymous` (a container with public read access).
//! 5. `--emulator`: Azurite's well-known account `devstoreaccount1` and key.
//!
//! For methods 2 to 5 the account name is `--account`, else the one named by the `--endpoint`
//! host (`ACCOUNT.blob.…`) or, for emulator-style URLs (`http://host:10000/ACCOUNT`), its first
//! path segment, else `devstoreaccount1` with `--emulator`, else env `AZURE_STORAGE_ACCOUNT`.
//! The command line comes before the environment so that a stray variable in a shell never
//! overrides an account named explicitly. The endpoint is `--endpoint`, else
//! `http://127.0.0.1:10000/ACCOUNT` with `--emulator`, else `https://ACCOUNT.blob.core.windows.net`.
//!
//! # Secrets
//!
//! Secrets are only ever read from files or the environment, never from the command line, so
//! they cannot leak through `ps` or `/proc/PID/cmdline` and there is nothing to scrub from the
//! process title. They never appear in an error message or a log line: errors name the file or
//! variable they came from, never the content.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::store::Credentials;

/// Azurite's (and the old storage emulator's) built-in account.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
/// The publicly documented key of [`EMULATOR_ACCOUNT`]; not a secret.
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where Azurite's blob service listens by default; the account name follows as a path segment.
pub const EMULATOR_BLOB_HOST: &str = "http://127.0.0.1:10000";

pub const ENV_CONNECTION_STRING: &str = "AZURE_STORAGE_CONNECTION_STRING";
pub const ENV_ACCOUNT: &str = "AZURE_STORAGE_ACCOUNT";
pub const ENV_KEY: &str = "AZURE_STORAGE_KEY";
pub const ENV_ACCESS_KEY: &str = "AZURE_STORAGE_ACCESS_KEY";
pub const ENV_SAS_TOKEN: &str = "AZURE_STORAGE_SAS_TOKEN";

/// Secret files are tiny; a larger file is a mistake (a wrong path), not a secret to load.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// The authentication-related options as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct AuthOptions {
    pub connection_string_file: Option<PathBuf>,
    pub account: Option<String>,
    pub account_key_file: Option<PathBuf>,
    pub sas_token_file: Option<PathBuf>,
    pub anonymous: bool,
    pub emulator: bool,
    pub endpoint: Option<String>,
}

/// Where to connect and how to authenticate, plus what to tell the user about the choice.
#[derive(Clone, Debug)]
pub struct ResolvedAuth {
    /// Blob service URL, without a trailing `/`.
    pub endpoint: String,
    pub credentials: Credentials,
    /// Where the credentials came from, e.g. "account key from env AZURE_STORAGE_KEY" (fits
    /// after "using"); never the secret itself.
    pub source: String,
    /// Things worth a warning in the log (ignored flags, a world-readable secret file).
    pub warnings: Vec<String>,
}

/// Picks the credentials and endpoint per the precedence in the module doc. `env` looks up an
/// environment variable (injectable so tests never touch the process environment); empty
/// values count as unset.
pub fn resolve(
    opts: &AuthOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedAuth, String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut warnings = Vec::new();
    let endpoint_override = opts
        .endpoint
        .as_deref()
        .map(|e| validate_endpoint(e, "--endpoint"))
        .transpose()?;

    // 1. Connection string.
    let connection_string = match &opts.connection_string_file {
        Some(path) => Some((
            read_secret_file(path, "connection string", &mut warnings)?,
            format!("connection string from {}", path.display()),
        )),
        None => env(ENV_CONNECTION_STRING).map(|s| {
            (
                s,
                format!("connection string from env {ENV_CONNECTION_STRING}"),
            )
        }),
    };
    if let Some((text, source)) = connection_string {
        let parsed = parse_connection_string(&text, &source)?;
        let endpoint = match endpoint_override {
            Some(e) => e,
            None => parsed.endpoint,
        };
        let ignored = [
            (opts.account_key_file.is_some(), "--account-key-file"),
            (opts.sas_token_file.is_some(), "--sas-token-file"),
            (opts.anonymous, "--anonymous"),
            (opts.emulator, "--emulator"),
            (opts.account.is_some(), "--account"),
        ];
        warn_ignored(&ignored, &source, &mut warnings);
        return Ok(ResolvedAuth {
            endpoint,
            credentials: parsed.credentials,
            source,
            warnings,
        });
    }

    // 2. Account key.
    let key = match &opts.account_key_file {
        Some(path) => Some((
            read_secret_file(path, "account key", &mut warnings)?,
            format!("{}", path.display()),
        )),
        None => env(ENV_KEY)
            .map(|k| (k, format!("env {ENV_KEY}")))
            .or_else(|| env(ENV_ACCESS_KEY).map(|k| (k, format!("env {ENV_ACCESS_KEY}")))),
    };
    if let Some((key, origin)) = key {
        let key = key.trim().to_string();
        check_base64_key(&key, &format!("account key in {origin}"))?;
        let account = resolve_account(opts, endpoint_override.as_deref(), &env)?;
        let endpoint = default_endpoint(opts, endpoint_override, &account);
        let source = format!("account key from {origin}");
        let ignored = [
            (opts.sas_token_file.is_some(), "--sas-token-file"),
            (opts.anonymous, "--anonymous"),
        ];
        warn_ignored(&ignored, &source, &mut warnings);
        return Ok(ResolvedAuth {
            endpoint,
            credentials: Credentials::AccountKey { account, key },
            source,
            warnings,
        });
    }

    // 3. SAS token.
    let sas = match &opts.sas_token_file {
        Some(path) => Some((
            read_secret_file(path, "SAS token", &mut warnings)?,
            format!("{}", path.display()),
        )),
        None => env(ENV_SAS_TOKEN).map(|t| (t, format!("env {ENV_SAS_TOKEN}"))),
    };
    if let Some((token, origin)) = sas {
        let token = normalize_sas_token(&token, &format!("SAS token in {origin}"))?;
        let account = resolve_account(opts, endpoint_override.as_deref(), &env)?;
        let endpoint = default_endpoint(opts, endpoint_override, &account);
        let source = format!("SAS token from {origin}");
        warn_ignored(&[(opts.anonymous, "--anonymous")], &source, &mut warnings);
        return Ok(ResolvedAuth {
            endpoint,
            credentials: Credentials::SasToken { account, token },
            source,
            warnings,
        });
    }

    // 4. Anonymous.
    if opts.anonymous {
        let account = resolve_account(opts, endpoint_override.as_deref(), &env)?;
        let endpoint = default_endpoint(opts, endpoint_override, &account);
        return Ok(ResolvedAuth {
            endpoint,
            credentials: Credentials::Anonymous { account },
            source: "no credentials (--anonymous)".to_string(),
            warnings,
        });
    }

    // 5. Emulator.
    if opts.emulator {
        let account = resolve_account(opts, endpoint_override.as_deref(), &env)?;
        let endpoint = default_endpoint(opts, endpoint_override, &account);
        return Ok(ResolvedAuth {
            endpoint,
            credentials: Credentials::AccountKey {
                account,
                key: EMULATOR_KEY.to_string(),
            },
            source: "the emulator's well-known account key (--emulator)".to_string(),
            warnings,
        });
    }

    Err(format!(
        "no credentials given: use --connection-string-file FILE (or env \
         {ENV_CONNECTION_STRING}), --account NAME with --account-key-file FILE (or env \
         {ENV_KEY}), --sas-token-file FILE (or env {ENV_SAS_TOKEN}), --anonymous, or --emulator"
    ))
}

fn warn_ignored(flags: &[(bool, &str)], winner: &str, warnings: &mut Vec<String>) {
    for (given, flag) in flags {
        if *given {
            warnings.push(format!("ignoring {flag}: the {winner} takes precedence"));
        }
    }
}

/// The account name for methods 2 to 5 (see the module doc for the order).
fn resolve_account(
    opts: &AuthOptions,
    endpoint: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if let Some(account) = &opts.account {
        return validate_account(account.trim(), "--account");
    }
    if let Some(endpoint) = endpoint {
        return match account_from_endpoint(endpoint) {
            Some(account) => validate_account(&account, "the --endpoint URL"),
            None => Err(format!(
                "cannot tell the storage account name from --endpoint {endpoint}: give --account"
            )),
        };
    }
    if opts.emulator {
        return Ok(EMULATOR_ACCOUNT.to_string());
    }
    match env(ENV_ACCOUNT) {
        Some(account) => validate_account(account.trim(), &format!("env {ENV_ACCOUNT}")),
        None => Err(format!(
            "no storage account name: give --account NAME, --endpoint URL or env {ENV_ACCOUNT}"
        )),
    }
}

fn default_endpoint(opts: &AuthOptions, endpoint: Option<String>, account: &str) -> String {
    match endpoint {
        Some(e) => e,
        None if opts.emulator => format!("{EMULATOR_BLOB_HOST}/{account}"),
        None => format!("https://{account}.blob.core.windows.net"),
    }
}

/// Account names end up in URLs and in the SharedKey signature, so anything beyond letters,
/// digits and hyphens is a mistake (Azure itself allows only 3-24 lowercase letters and digits;
/// emulators are laxer, hence the looser check).
fn validate_account(account: &str, origin: &str) -> Result<String, String> {
    if account.is_empty()
        || account.len() > 63
        || !account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "invalid storage account name '{account}' from {origin}: use letters and digits only"
        ));
    }
    Ok(account.to_string())
}

/// Checks a blob service URL and normalizes it (no trailing `/`). The URL is echoed in errors
/// only once it is known to carry no query string or user info, the places a secret could hide.
fn validate_endpoint(raw: &str, origin: &str) -> Result<String, String> {
    let url =
        url::Url::parse(raw.trim()).map_err(|e| format!("{origin} is not a valid URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{origin} must be the blob service URL without a query string; put a SAS token in \
             --sas-token-file or env {ENV_SAS_TOKEN}"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{origin} must not contain a user name or password"));
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "{origin} must be an http:// or https:// URL, not {}",
            url.as_str()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{origin} has no host: {}", url.as_str()));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The account named by a blob service URL: `ACCOUNT` in `ACCOUNT.blob.core.windows.net` (and
/// the other clouds, private links and DNS zones, all of which have a `blob` label), else the
/// first path segment of an emulator-style `http://127.0.0.1:10000/ACCOUNT`.
pub fn account_from_endpoint(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    let host = url.host_str()?;
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() > 2 && labels[1..].contains(&"blob") && !labels[0].is_empty() {
        return Some(labels[0].to_string());
    }
    url.path_segments()?
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What a connection string resolves to.
#[derive(Debug)]
struct ParsedConnectionString {
    endpoint: String,
    credentials: Credentials,
}

/// Parses `key=value;key=value` (keys case-insensitive, values may contain `=`). `origin`
/// names where the string came from, for error messages that never quote the string.
fn parse_connection_string(text: &str, origin: &str) -> Result<ParsedConnectionString, String> {
    let mut fields: HashMap<String, String> = HashMap::new();
    for (i, segment) in text.trim().split(';').enumerate() {
        if segment.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = segment.split_once('=') else {
            return Err(format!(
                "{origin} is malformed: part {} is not key=value",
                i + 1
            ));
        };
        let key = key.trim().to_ascii_lowercase();
        if fields
            .insert(key.clone(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("{origin} is malformed: {key} is given twice"));
        }
    }
    let get = |k: &str| fields.get(k).map(String::as_str).filter(|v| !v.is_empty());

    if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(ParsedConnectionString {
            endpoint: format!("{EMULATOR_BLOB_HOST}/{EMULATOR_ACCOUNT}"),
            credentials: Credentials::AccountKey {
                account: EMULATOR_ACCOUNT.to_string(),
                key: EMULATOR_KEY.to_string(),
            },
        });
    }

    let blob_endpoint = get("blobendpoint")
        .map(|e| validate_endpoint(e, &format!("BlobEndpoint in the {origin}")))
        .transpose()?;
    let account = match get("accountname") {
        Some(a) => Some(validate_account(
            a,
            &format!("AccountName in the {origin}"),
        )?),
        None => blob_endpoint.as_deref().and_then(account_from_endpoint),
    };
    let Some(account) = account else {
        return Err(format!(
            "{origin} has no AccountName (nor a BlobEndpoint that names the account)"
        ));
    };
    let endpoint = match blob_endpoint {
        Some(e) => e,
        None => {
            let protocol = get("defaultendpointsprotocol").unwrap_or("https");
            if protocol != "https" && protocol != "http" {
                return Err(format!(
                    "{origin}: DefaultEndpointsProtocol must be https or http, not '{protocol}'"
                ));
            }
            let suffix = get("endpointsuffix").unwrap_or("core.windows.net");
            validate_endpoint(
                &format!("{protocol}://{account}.blob.{suffix}"),
                &format!("the endpoint built from the {origin}"),
            )?
        }
    };

    // An account key can do everything a SAS can, so it wins when both are present.
    let credentials = if let Some(key) = get("accountkey") {
        check_base64_key(key, &format!("AccountKey in the {origin}"))?;
        Credentials::AccountKey {
            account,
            key: key.to_string(),
        }
    } else if let Some(sas) = get("sharedaccesssignature") {
        Credentials::SasToken {
            account,
            token: normalize_sas_token(sas, &format!("SharedAccessSignature in the {origin}"))?,
        }
    } else {
        return Err(format!(
            "{origin} has neither AccountKey nor SharedAccessSignature (for a public container \
             use --anonymous)"
        ));
    };
    Ok(ParsedConnectionString {
        endpoint,
        credentials,
    })
}

/// `what` says where the key came from, e.g. "account key in /etc/key"; the key itself is
/// never part of the message.
fn check_base64_key(key: &str, what: &str) -> Result<(), String> {
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        _ => Err(format!("{what} is not valid base64")),
    }
}

/// Accepts a SAS token with or without its leading `?` and checks it has a signature, which
/// catches a wrong file or a pasted URL early instead of as a 403 at mount time.
fn normalize_sas_token(raw: &str, what: &str) -> Result<String, String> {
    let token = raw.trim();
    if token.starts_with("http://") || token.starts_with("https://") {
        return Err(format!(
            "{what} is a URL: keep only the part after '?' (sv=...&sig=...) and give the \
             service URL with --endpoint"
        ));
    }
    let token = token.strip_prefix('?').unwrap_or(token);
    if !token.split('&').any(|p| p.starts_with("sig=")) {
        return Err(format!("{what} has no sig= parameter"));
    }
    Ok(token.to_string())
}

/// Reads a secret file, stripping surrounding whitespace (a trailing newline from an editor or
/// `echo` is the usual case). Errors name the path, never the content.
fn read_secret_file(path: &Path, what: &str, warnings: &mut Vec<String>) -> Result<String, String> {
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    if let Ok(meta) = file.metadata() {
        if !meta.is_file() {
            return Err(format!("{what} file {shown} is not a regular file"));
        }
        if meta.permissions().mode() & 0o004 != 0 {
            warnings.push(format!(
                "{what} file {shown} is readable by every user; chmod o-r it"
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what} file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "{what} file {shown} is larger than {MAX_SECRET_FILE_BYTES} bytes; is it the right file?"
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{what} file {shown} is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{what} file {shown} is empty"));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5LWJ5dGVzLWZvci10ZXN0cw==";
    const SAS: &str = "sv=2022-11-02&ss=b&srt=co&sp=rl&sig=abc%2Bdef";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn key_of(c: &Credentials) -> (&str, &str) {
        match c {
            Credentials::AccountKey { account, key } => (account, key),
            other => panic!("expected an account key, got {other:?}"),
        }
    }

    fn sas_of(c: &Credentials) -> (&str, &str) {
        match c {
            Credentials::SasToken { account, token } => (account, token),
            other => panic!("expected a SAS token, got {other:?}"),
        }
    }

    #[test]
    fn no_credentials_is_an_error_listing_the_methods() {
        let err = resolve(&AuthOptions::default(), &no_env).unwrap_err();
        assert!(err.contains("--connection-string-file"), "{err}");
        assert!(err.contains("--anonymous"), "{err}");
    }

    #[test]
    fn account_key_from_file_with_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(&dir, "key", &format!("{KEY}\n\n"));
        let opts = AuthOptions {
            account: Some("myacct".into()),
            account_key_file: Some(path.clone()),
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert_eq!(key_of(&r.credentials), ("myacct", KEY));
        assert_eq!(r.endpoint, "https://myacct.blob.core.windows.net");
        assert!(r.source.contains(&path.display().to_string()));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn account_key_from_env_with_account_from_env() {
        let env = env_of(&[(ENV_ACCOUNT, "envacct"), (ENV_ACCESS_KEY, KEY)]);
        let r = resolve(&AuthOptions::default(), &env).unwrap();
        assert_eq!(key_of(&r.credentials), ("envacct", KEY));
        assert_eq!(r.source, format!("account key from env {ENV_ACCESS_KEY}"));
    }

    #[test]
    fn storage_key_beats_access_key_and_key_file_beats_both() {
        let other = "b3RoZXIta2V5";
        let env = env_of(&[(ENV_KEY, KEY), (ENV_ACCESS_KEY, "b3RoZXIta2V5")]);
        let opts = AuthOptions {
            account: Some("a1".into()),
            ..Default::default()
        };
        assert_eq!(key_of(&resolve(&opts, &env).unwrap().credentials).1, KEY);

        let dir = tempfile::tempdir().unwrap();
        let opts = AuthOptions {
            account: Some("a1".into()),
            account_key_file: Some(secret_file(&dir, "k", other)),
            ..Default::default()
        };
        assert_eq!(key_of(&resolve(&opts, &env).unwrap().credentials).1, other);
    }

    #[test]
    fn account_key_without_account_is_an_error() {
        let env = env_of(&[(ENV_KEY, KEY)]);
        let err = resolve(&AuthOptions::default(), &env).unwrap_err();
        assert!(err.contains("no storage account name"), "{err}");
    }

    #[test]
    fn invalid_base64_key_names_the_file_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(&dir, "key", "not base64 !!secretvalue");
        let opts = AuthOptions {
            account: Some("a1".into()),
            account_key_file: Some(path.clone()),
            ..Default::default()
        };
        let err = resolve(&opts, &no_env).unwrap_err();
        assert_eq!(
            err,
            format!("account key in {} is not valid base64", path.display())
        );
        assert!(!err.contains("secretvalue"));
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let opts = AuthOptions {
            account: Some("a1".into()),
            account_key_file: Some("/nonexistent/azblobfs-key".into()),
            ..Default::default()
        };
        let err = resolve(&opts, &no_env).unwrap_err();
        assert!(err.contains("/nonexistent/azblobfs-key"), "{err}");
        assert!(err.starts_with("cannot read account key file"), "{err}");
    }

    #[test]
    fn empty_and_world_readable_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = secret_file(&dir, "empty", " \n");
        let opts = AuthOptions {
            account: Some("a1".into()),
            sas_token_file: Some(empty),
            ..Default::default()
        };
        assert!(resolve(&opts, &no_env).unwrap_err().contains("is empty"));

        let open = secret_file(&dir, "open", SAS);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let opts = AuthOptions {
            account: Some("a1".into()),
            sas_token_file: Some(open),
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert!(r
            .warnings
            .iter()
            .any(|w| w.contains("readable by every user")));
    }

    #[test]
    fn sas_token_from_file_strips_question_mark() {
        let dir = tempfile::tempdir().unwrap();
        let opts = AuthOptions {
            account: Some("acct".into()),
            sas_token_file: Some(secret_file(&dir, "sas", &format!("?{SAS}\n"))),
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert_eq!(sas_of(&r.credentials), ("acct", SAS));
        assert_eq!(r.endpoint, "https://acct.blob.core.windows.net");
    }

    #[test]
    fn sas_token_account_from_endpoint_host_or_emulator_path() {
        let env = env_of(&[(ENV_SAS_TOKEN, SAS), (ENV_ACCOUNT, "fromenv")]);
        let opts = AuthOptions {
            endpoint: Some("https://hostacct.blob.core.windows.net/".into()),
            ..Default::default()
        };
        let r = resolve(&opts, &env).unwrap();
        assert_eq!(sas_of(&r.credentials).0, "hostacct");
        assert_eq!(r.endpoint, "https://hostacct.blob.core.windows.net");

        let opts = AuthOptions {
            endpoint: Some("http://127.0.0.1:10000/pathacct/".into()),
            ..Default::default()
        };
        let r = resolve(&opts, &env).unwrap();
        assert_eq!(sas_of(&r.credentials).0, "pathacct");
        assert_eq!(r.endpoint, "http://127.0.0.1:10000/pathacct");

        // No --account and no --endpoint: the environment's account.
        let r = resolve(&AuthOptions::default(), &env).unwrap();
        assert_eq!(sas_of(&r.credentials).0, "fromenv");
        assert_eq!(r.endpoint, "https://fromenv.blob.core.windows.net");
    }

    #[test]
    fn sas_without_account_is_an_error() {
        let env = env_of(&[(ENV_SAS_TOKEN, SAS)]);
        assert!(resolve(&AuthOptions::default(), &env)
            .unwrap_err()
            .contains("no storage account name"));
    }

    #[test]
    fn sas_token_must_be_a_signature_not_a_url() {
        let env = env_of(&[(ENV_SAS_TOKEN, "sv=2022&sp=r"), (ENV_ACCOUNT, "a1")]);
        let err = resolve(&AuthOptions::default(), &env).unwrap_err();
        assert!(err.contains("no sig="), "{err}");
        let env = env_of(&[
            (
                ENV_SAS_TOKEN,
                "https://a1.blob.core.windows.net/c?sv=1&sig=x",
            ),
            (ENV_ACCOUNT, "a1"),
        ]);
        let err = resolve(&AuthOptions::default(), &env).unwrap_err();
        assert!(err.contains("is a URL"), "{err}");
        assert!(!err.contains("sig=x"), "{err}");
    }

    #[test]
    fn anonymous_needs_an_account() {
        let opts = AuthOptions {
            anonymous: true,
            ..Default::default()
        };
        assert!(resolve(&opts, &no_env).is_err());
        let opts = AuthOptions {
            anonymous: true,
            account: Some("pub".into()),
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert!(matches!(&r.credentials, Credentials::Anonymous { account } if account == "pub"));
        assert_eq!(r.endpoint, "https://pub.blob.core.windows.net");
    }

    #[test]
    fn emulator_defaults() {
        let opts = AuthOptions {
            emulator: true,
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert_eq!(key_of(&r.credentials), (EMULATOR_ACCOUNT, EMULATOR_KEY));
        assert_eq!(r.endpoint, "http://127.0.0.1:10000/devstoreaccount1");

        // The emulator's account beats a stray AZURE_STORAGE_ACCOUNT.
        let env = env_of(&[(ENV_ACCOUNT, "prod")]);
        let r = resolve(&opts, &env).unwrap();
        assert_eq!(key_of(&r.credentials).0, EMULATOR_ACCOUNT);

        // --emulator with --anonymous: anonymous access to the emulator.
        let opts = AuthOptions {
            emulator: true,
            anonymous: true,
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert!(matches!(r.credentials, Credentials::Anonymous { .. }));
        assert_eq!(r.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    }

    #[test]
    fn precedence_connection_string_then_key_then_sas_then_anonymous_then_emulator() {
        let cs = format!("AccountName=csacct;AccountKey={KEY}");
        let all: Vec<(&str, String)> = vec![
            (ENV_CONNECTION_STRING, cs),
            (ENV_ACCOUNT, "envacct".into()),
            (ENV_KEY, KEY.into()),
            (ENV_SAS_TOKEN, SAS.into()),
        ];
        let opts = AuthOptions {
            anonymous: true,
            emulator: true,
            ..Default::default()
        };
        let env_without = |skip: &'static [&'static str]| {
            let all = all.clone();
            move |name: &str| {
                all.iter()
                    .find(|(k, _)| *k == name && !skip.contains(k))
                    .map(|(_, v)| v.clone())
            }
        };

        let r = resolve(&opts, &env_without(&[])).unwrap();
        assert_eq!(key_of(&r.credentials).0, "csacct");
        assert!(r.warnings.iter().any(|w| w.contains("--anonymous")));

        let r = resolve(&opts, &env_without(&[ENV_CONNECTION_STRING])).unwrap();
        assert!(r.source.contains(ENV_KEY), "{}", r.source);

        let r = resolve(&opts, &env_without(&[ENV_CONNECTION_STRING, ENV_KEY])).unwrap();
        assert!(matches!(r.credentials, Credentials::SasToken { .. }));

        let r = resolve(
            &opts,
            &env_without(&[ENV_CONNECTION_STRING, ENV_KEY, ENV_SAS_TOKEN]),
        )
        .unwrap();
        assert!(matches!(r.credentials, Credentials::Anonymous { .. }));

        let only_emulator = AuthOptions {
            emulator: true,
            ..Default::default()
        };
        let r = resolve(&only_emulator, &no_env).unwrap();
        assert_eq!(key_of(&r.credentials).1, EMULATOR_KEY);
    }

    #[test]
    fn connection_string_file_beats_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(
            &dir,
            "cs",
            &format!("AccountName=fileacct;AccountKey={KEY}\n"),
        );
        let env = env_of(&[(
            ENV_CONNECTION_STRING,
            "AccountName=envacct;AccountKey=a2V5LWJ5dGVzLWZvci10ZXN0cw==",
        )]);
        let opts = AuthOptions {
            connection_string_file: Some(path),
            ..Default::default()
        };
        let r = resolve(&opts, &env).unwrap();
        assert_eq!(key_of(&r.credentials).0, "fileacct");
    }

    #[test]
    fn connection_string_account_key_form() {
        let cs = format!(
            "DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
        );
        let p = parse_connection_string(&cs, "test").unwrap();
        assert_eq!(key_of(&p.credentials), ("myacct", KEY));
        assert_eq!(p.endpoint, "https://myacct.blob.core.chinacloudapi.cn");

        // Keys are case-insensitive, values keep their '=' padding, empty parts are skipped.
        let cs = format!("accountname=myacct;ACCOUNTKEY={KEY};;");
        let p = parse_connection_string(&cs, "test").unwrap();
        assert_eq!(key_of(&p.credentials), ("myacct", KEY));
        assert_eq!(p.endpoint, "https://myacct.blob.core.windows.net");

        let cs = format!("DefaultEndpointsProtocol=http;AccountName=myacct;AccountKey={KEY}");
        let p = parse_connection_string(&cs, "test").unwrap();
        assert_eq!(p.endpoint, "http://myacct.blob.core.windows.net");
    }

    #[test]
    fn connection_string_blob_endpoint_wins() {
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;"
        );
        let p = parse_connection_string(&cs, "test").unwrap();
        assert_eq!(p.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(key_of(&p.credentials).0, "devstoreaccount1");
    }

    #[test]
    fn connection_string_sas_form() {
        let cs = format!(
            "BlobEndpoint=https://sasacct.blob.core.windows.net/;SharedAccessSignature={SAS}"
        );
        let p = parse_connection_string(&cs, "test").unwrap();
        assert_eq!(sas_of(&p.credentials), ("sasacct", SAS));
        assert_eq!(p.endpoint, "https://sasacct.blob.core.windows.net");
    }

    #[test]
    fn connection_string_development_storage() {
        let p = parse_connection_string("UseDevelopmentStorage=true", "test").unwrap();
        assert_eq!(key_of(&p.credentials), (EMULATOR_ACCOUNT, EMULATOR_KEY));
        assert_eq!(p.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    }

    #[test]
    fn connection_string_errors_never_quote_secrets() {
        let err = parse_connection_string("AccountName=a1;supersecret", "the origin").unwrap_err();
        assert!(err.contains("part 2"), "{err}");
        assert!(!err.contains("supersecret"), "{err}");

        let err =
            parse_connection_string("AccountName=a1;AccountKey=bad!secret", "origin").unwrap_err();
        assert_eq!(err, "AccountKey in the origin is not valid base64");

        let err = parse_connection_string("AccountName=a1", "origin").unwrap_err();
        assert!(err.contains("neither AccountKey"), "{err}");

        let err = parse_connection_string(&format!("AccountKey={KEY}"), "origin").unwrap_err();
        assert!(err.contains("no AccountName"), "{err}");

        let err = parse_connection_string(
            &format!("AccountName=a1;AccountKey={KEY};BlobEndpoint=https://a1.example/?sig=secret"),
            "origin",
        )
        .unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn endpoint_flag_overrides_connection_string_and_is_trimmed() {
        let env = env_of(&[(
            ENV_CONNECTION_STRING,
            "AccountName=a1;AccountKey=a2V5LWJ5dGVzLWZvci10ZXN0cw==",
        )]);
        let opts = AuthOptions {
            endpoint: Some("http://localhost:10000/a1///".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&opts, &env).unwrap().endpoint,
            "http://localhost:10000/a1"
        );
    }

    #[test]
    fn endpoint_validation() {
        for bad in [
            "not a url",
            "ftp://a1.blob.core.windows.net",
            "https://a1.blob.core.windows.net/?sv=1&sig=secret",
            "https://user:secret@a1.blob.core.windows.net",
        ] {
            let err = validate_endpoint(bad, "--endpoint").unwrap_err();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn account_from_endpoint_rules() {
        let cases = [
            ("https://acct.blob.core.windows.net", Some("acct")),
            (
                "https://acct.privatelink.blob.core.windows.net/",
                Some("acct"),
            ),
            (
                "http://127.0.0.1:10000/devstoreaccount1",
                Some("devstoreaccount1"),
            ),
            ("http://azurite:10000/other/", Some("other")),
            ("https://storage.example.com", None),
        ];
        for (url, want) in cases {
            assert_eq!(account_from_endpoint(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn emulator_with_custom_account_uses_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let opts = AuthOptions {
            emulator: true,
            account: Some("custom1".into()),
            account_key_file: Some(secret_file(&dir, "k", KEY)),
            ..Default::default()
        };
        let r = resolve(&opts, &no_env).unwrap();
        assert_eq!(r.endpoint, "http://127.0.0.1:10000/custom1");
        assert_eq!(key_of(&r.credentials), ("custom1", KEY));
    }

    #[test]
    fn invalid_account_names() {
        let opts = AuthOptions {
            anonymous: true,
            account: Some("bad/name".into()),
            ..Default::default()
        };
        assert!(resolve(&opts, &no_env)
            .unwrap_err()
            .contains("invalid storage account name"));
    }
}
