//! Where the bridge keeps what an authorization produced (client registration,
//! access and refresh tokens), keyed by the gateway's MCP endpoint URL.
//!
//! - macOS / Windows: the OS credential store (Keychain, Credential Manager)
//!   through the `keyring` crate, service `switchboard-bridge`, account = the
//!   endpoint URL. If the store refuses (no keychain, Windows' 2560-byte limit),
//!   the file below is used instead.
//! - Elsewhere (Linux): a file readable by the user only (0600, in a 0700 folder)
//!   under the bridge's config folder: `$XDG_CONFIG_HOME/switchboard/oauth/`
//!   (default `~/.config/switchboard/oauth/`), one file per endpoint, named by a
//!   hash of the URL, replaced atomically.
//! - `memory`: nothing is written (tests, or a user who wants to log in each time).
//!
//! **Invariant:** secrets are [`Secret`]s: `Debug` prints `<redacted>`, and the
//! memory is zeroed on drop.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::StoreKind;

/// Keyring service name.
#[cfg(any(target_os = "macos", target_os = "windows"))]
const SERVICE: &str = "switchboard-bridge";
/// Largest record file read.
const MAX_RECORD: u64 = 256 * 1024;

/// A secret string: never shown by `Debug`, zeroed on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthMethod {
    /// Public client: `client_id` in the body.
    None,
    /// HTTP Basic with the form-encoded id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the body.
    ClientSecretPost,
}

/// The client as registered at one authorization server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientInfo {
    pub(crate) client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret: Option<Secret>,
    pub(crate) auth_method: AuthMethod,
    /// The redirect URI registered by dynamic registration (its port is reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) redirect_uri: Option<String>,
    /// How the client id was obtained: `preregistered`, `metadata_document`, `dynamic`.
    pub(crate) kind: String,
}

/// Everything kept for one gateway endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// The authorization server's issuer identifier.
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    /// The RFC 8707 `resource` sent in token requests.
    pub(crate) resource: String,
    pub(crate) client: ClientInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) access_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<Secret>,
    /// Unix seconds; `None`: the server gave no lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<u64>,
    /// The scopes asked for (the union over step-ups).
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
}

/// The configured store.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Memory,
    File(PathBuf),
    #[cfg(any(target_os = "macos", target_os = "windows"))]
    Keyring(PathBuf),
}

impl Store {
    /// The store for `kind`, with `dir` (or the default config folder) for files.
    pub(crate) fn new(kind: StoreKind, dir: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let dir = || {
            dir.clone().or_else(|| default_dir(env)).unwrap_or_else(|| PathBuf::from(".switchboard-oauth"))
        };
        match kind {
            StoreKind::Memory => Self::Memory,
            StoreKind::File => Self::File(dir()),
            #[cfg(any(target_os = "macos", target_os = "windows"))]
            StoreKind::Auto | StoreKind::Keyring => Self::Keyring(dir()),
            #[cfg(not(any(target_os = "macos", target_os = "windows")))]
            StoreKind::Auto | StoreKind::Keyring => {
                if kind == StoreKind::Keyring {
                    tracing::warn!(
                        "no OS credential store is used on this platform; keeping tokens in a 0600 file"
                    );
                }
                Self::File(dir())
            }
        }
    }

    /// A short description for `bridge check` (no secrets).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Memory => "not stored (memory only)".to_owned(),
            Self::File(dir) => format!("file in {}", dir.display()),
            #[cfg(any(target_os = "macos", target_os = "windows"))]
            Self::Keyring(_) => "OS credential store".to_owned(),
        }
    }

    /// The record for `key`, if one is stored and readable.
    pub(crate) fn load(&self, key: &str) -> Option<TokenRecord> {
        match self {
            Self::Memory => None,
            Self::File(dir) => load_file(&file_for(dir, key)),
            #[cfg(any(target_os = "macos", target_os = "windows"))]
            Self::Keyring(dir) => {
                let from_keyring = keyring::Entry::new(SERVICE, key)
                    .and_then(|e| e.get_password())
                    .map_err(|e| {
                        if !matches!(e, keyring::Error::NoEntry) {
                            tracing::debug!(error = %e, "credential store read failed");
                        }
                    })
                    .ok()
                    .and_then(|text| serde_json::from_str::<TokenRecord>(&text).ok());
                from_keyring.or_else(|| load_file(&file_for(dir, key)))
            }
        }
    }

    /// Stores `record` for `key` (best effort: a failure is logged, not fatal).
    pub(crate) fn save(&self, key: &str, record: &TokenRecord) {
        let Ok(text) = serde_json::to_string(record) else {
            return;
        };
        match self {
            Self::Memory => {}
            Self::File(dir) => {
                if let Err(e) = save_file(dir, &file_for(dir, key), text.as_bytes()) {
                    tracing::warn!(error = %e, dir = %dir.display(), "could not store the OAuth tokens");
                }
            }
            #[cfg(any(target_os = "macos", target_os = "windows"))]
            Self::Keyring(dir) => {
                let saved = keyring::Entry::new(SERVICE, key).and_then(|e| e.set_password(&text));
                match saved {
                    Ok(()) => {
                        let _ = std::fs::remove_file(file_for(dir, key));
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "the OS credential store refused the tokens; using a private file");
                        if let Err(e) = save_file(dir, &file_for(dir, key), text.as_bytes()) {
                            tracing::warn!(error = %e, dir = %dir.display(), "could not store the OAuth tokens");
                        }
                    }
                }
            }
        }
    }
}

/// The bridge's config folder: `%APPDATA%\switchboard\oauth` (Windows),
/// `~/Library/Application Support/switchboard/oauth` (macOS),
/// `$XDG_CONFIG_HOME/switchboard/oauth` or `~/.config/switchboard/oauth` (others).
pub(crate) fn default_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    let base = if cfg!(target_os = "windows") {
        set("APPDATA")
    } else if cfg!(target_os = "macos") {
        set("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        set("XDG_CONFIG_HOME").or_else(|| set("HOME").map(|h| h.join(".config")))
    };
    base.map(|b| b.join("switchboard").join("oauth"))
}

/// One file per endpoint, named by a hash of its URL (no URL characters in names).
fn file_for(dir: &Path, key: &str) -> PathBuf {
    let hash = blake3::hash(key.as_bytes()).to_hex();
    dir.join(format!("{}.json", &hash.as_str()[..32]))
}

fn load_file(path: &Path) -> Option<TokenRecord> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    let record = serde_json::from_str(&text);
    text.zeroize();
    record.ok()
}

/// Writes a private file atomically: a 0600 temporary file in the same 0700
/// folder, synced, then renamed over the old one.
fn save_file(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let mut n = [0u8; 8];
    getrandom::fill(&mut n).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".tmp-{}", u64::from_le_bytes(n)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> TokenRecord {
        TokenRecord {
            issuer: "https://auth.example.com".into(),
            token_endpoint: "https://auth.example.com/token".into(),
            resource: "https://gw.example.com/mcp".into(),
            client: ClientInfo {
                client_id: "client-1".into(),
                client_secret: Some(Secret::new("client-secret-value")),
                auth_method: AuthMethod::ClientSecretBasic,
                redirect_uri: Some("http://127.0.0.1:4567/callback".into()),
                kind: "dynamic".into(),
            },
            access_token: Some(Secret::new("access-token-value")),
            refresh_token: Some(Secret::new("refresh-token-value")),
            expires_at: Some(1_900_000_000),
            scopes: vec!["mcp:basic".into()],
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let text = format!("{:?}", record());
        for secret in ["client-secret-value", "access-token-value", "refresh-token-value"] {
            assert!(!text.contains(secret), "{secret} leaked into Debug: {text}");
        }
        assert!(text.contains("client-1") && text.contains("<redacted>"));
    }

    #[test]
    fn file_store_round_trip_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("nested").join("oauth");
        let store = Store::File(store_dir.clone());
        let key = "https://gw.example.com/mcp";
        assert_eq!(store.load(key), None);
        store.save(key, &record());
        assert_eq!(store.load(key), Some(record()));
        let path = file_for(&store_dir, key);
        assert!(!path.file_name().unwrap().to_string_lossy().contains("gw.example"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&store_dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        // overwrite, then a second key, then delete
        let mut changed = record();
        changed.access_token = Some(Secret::new("second"));
        store.save(key, &changed);
        assert_eq!(store.load(key).unwrap().access_token, Some(Secret::new("second")));
        store.save("https://other/mcp", &record());
        assert!(store.load("https://other/mcp").is_some());
        // one file per key, no temporary files left behind
        let names: Vec<_> = std::fs::read_dir(&store_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // a corrupt file reads as nothing
        std::fs::write(file_for(&store_dir, key), b"{not json").unwrap();
        assert_eq!(store.load(key), None);
        assert_eq!(Store::Memory.load(key), None);
    }

    #[test]
    fn default_dirs() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_owned()),
            "XDG_CONFIG_HOME" => Some("/xdg".to_owned()),
            "APPDATA" => Some("C:\\Users\\u\\AppData\\Roaming".to_owned()),
            _ => None,
        };
        let dir = default_dir(&env).unwrap();
        assert!(dir.ends_with(Path::new("switchboard").join("oauth")));
        #[cfg(target_os = "linux")]
        {
            assert_eq!(dir, PathBuf::from("/xdg/switchboard/oauth"));
            let no_xdg = |k: &str| if k == "HOME" { Some("/home/u".to_owned()) } else { None };
            assert_eq!(default_dir(&no_xdg).unwrap(), PathBuf::from("/home/u/.config/switchboard/oauth"));
        }
        assert_eq!(default_dir(&|_| None), None);
    }
}
