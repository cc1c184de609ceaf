//! The domain of a session: its id, its record, and the rules of its life.
//!
//! A session is created by `/init` (or `initialize` on `/mcp`), lives in the
//! store only, and ends by `DELETE` or by idling past its TTL. Nothing here
//! does I/O; the store persists [`SessionRecord`]s and the server turns them
//! into views without secrets.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Length of an encoded id: 32 bytes in unpadded base64url.
const ID_LEN: usize = 43;

/// Version of the stored record layout this release writes (`schema`). A worker reads a
/// record whose `compat` (the oldest layout that can read it; absent: its `schema`) is at
/// most [`READS_SCHEMA`], whatever its `schema`: changes that keep `compat` are additive.
pub const SCHEMA_VERSION: u32 = 1;

/// The `compat` this release writes: the oldest layout that can read its records. Raised
/// only by a change old workers cannot read, one release after workers that read the new
/// layout shipped (the two-step rule of deploy/README.md).
pub const COMPAT_VERSION: u32 = 1;

/// The newest `compat` this release can read: a record needing more is version skew.
pub const READS_SCHEMA: u32 = 1;

/// The oldest layout this release reads (1, the first, until a two-step change retires it).
pub const OLDEST_SCHEMA: u32 = 1;

/// What `switchboard --version` says of the records: the layout written and those read.
pub fn schema_summary() -> String {
    format!(
        "record schema written: {SCHEMA_VERSION} (compat {COMPAT_VERSION})\n\
         record schema read: {OLDEST_SCHEMA} and newer, whose compat is at most {READS_SCHEMA}"
    )
}

/// A session id: 256 bits from the OS CSPRNG, base64url, never derived from credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts only what [`SessionId::generate`] can produce; anything else is no session.
    pub fn parse(text: &str) -> Option<Self> {
        let ok =
            text.len() == ID_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Ids are bearer secrets of a kind: logs show only a prefix.
impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({}…)", &self.0[..8.min(self.0.len())])
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store keeps of a session. Credentials are sealed before they get here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    /// Layout version, for rolling deploys across versions.
    pub schema: u32,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Last access, Unix milliseconds; every read and write updates it.
    pub last_seen_ms: u64,
    /// Who the credentials belong to, as the auth check reported it; never a secret.
    pub principal: String,
    /// The identity document returned by the credentials check (http mode), or null.
    pub identity: serde_json::Value,
    /// The identity sealed like the credentials (associated data `<id>.identity`); when set,
    /// `identity` is null. Records of earlier releases have only the plain `identity`.
    #[serde(default)]
    pub sealed_identity: Option<String>,
    /// `clientInfo` or the `client` object given at `/init`.
    pub client: serde_json::Value,
    /// MCP protocol version negotiated on `/mcp`, if the session came from there.
    pub protocol_version: Option<String>,
    /// Credentials sealed by [`crate::crypto::Sealer`].
    pub sealed_credentials: String,
    /// Free JSON object for workflow state, changed by merge patches.
    pub state: serde_json::Value,
    /// Revision of `state`, bumped by every patch (compare-and-set without WATCH).
    pub state_rev: u64,
    /// The MCP log level the client set with `logging/setLevel`, applied to every child.
    pub log_level: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Applies an RFC 7396 JSON merge patch to `target`.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
