//! Sessions: create one for verified credentials, load one (resetting its idle TTL),
//! bind one to the token a request presents (on either door), patch its state, end it.
//!
//! Binding compares the token the session was created with to the one presented, in
//! constant time; a missing token never equals anything. A request without a token is
//! let in only on the legacy door, only for a session made on `/init` (the seed's API:
//! the session id alone), and only while `auth.require_principal` is off; on `/mcp`, only
//! for a session opened without a token (`auth.mode = none`). Every refusal is
//! `SessionNotFound`: to this caller, another principal's session does not exist.
//!
//! In auth mode `oauth` a session is bound to a principal, not to a token: access tokens are
//! short-lived and refreshed, so every request presents a token that is checked afresh
//! (none: 401) and whose (`iss`, `sub`) must be the session's.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Gateway, GatewayError, Operation};
use crate::auth::AuthError;
use crate::results::cache_field;
use crate::session::{SCHEMA_VERSION, SessionId, SessionRecord, merge_patch, now_ms};
use crate::store::CasOutcome;
use crate::telemetry::events::{Emit, SessionEvent};

/// Most attempts of a state compare-and-set before giving up with [`GatewayError::Contention`].
const MAX_CAS_ATTEMPTS: usize = 200;

/// The door a request came by: a request without a token is judged by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `/mcp` (Streamable HTTP).
    Mcp,
    /// `/tools`, `/call-tool`, `/session` (the seed's API).
    Legacy,
}

/// What a request presents to use a session: its bearer token (if any) and its door.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub token: Option<&'a str>,
    pub door: Door,
}

/// A session whose caller presented its own credentials: id, record and credentials, opened.
pub struct Bound {
    pub id: SessionId,
    pub record: SessionRecord,
    pub credentials: Value,
    /// The cache entry of the tool call the session was bound for, read with it.
    pub prefetched: Option<Prefetched>,
}

/// A result-cache entry read in the same store round trip that loaded the session.
pub struct Prefetched {
    /// The cache field (see `results::cache_field`).
    pub field: String,
    /// The entry, if there is one (fresh or not).
    pub entry: Option<String>,
}

/// What a client may see of a session (never its credentials).
pub struct SessionView<'a> {
    pub id: &'a SessionId,
    pub record: &'a SessionRecord,
    pub idle_ttl_secs: u64,
}

impl SessionView<'_> {
    /// The JSON of `GET /session`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "session_id": self.id.as_str(),
            "created_at": rfc3339(self.record.created_ms),
            "last_seen": rfc3339(self.record.last_seen_ms),
            "idle_ttl_secs": self.idle_ttl_secs,
            "principal": self.record.principal,
            "client": self.record.client,
            "protocol_version": self.record.protocol_version,
            "state": self.record.state,
        })
        .to_string()
    }
}

fn rfc3339(ms: u64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

impl Gateway {
    /// A session id as a client sent it; anything malformed is no session at all.
    pub fn parse_session_id(raw: &str) -> Result<SessionId, GatewayError> {
        SessionId::parse(raw.trim()).ok_or(GatewayError::SessionNotFound)
    }

    /// Loads a session for a request that presented only its id: its principal's request
    /// rate is taken once the record names the principal.
    pub async fn open_session(&self, id: &SessionId) -> Result<SessionRecord, GatewayError> {
        let record = self.load_session(id).await?;
        self.check_rate(&record).await?;
        Ok(record)
    }

    /// Loads a session, resetting its idle TTL.
    pub async fn load_session(&self, id: &SessionId) -> Result<SessionRecord, GatewayError> {
        match self.store.load(id, now_ms(), self.config.idle_ttl()).await? {
            Some(record) => Ok(record),
            None => {
                SessionEvent::NotFound.emit(&self.metrics);
                Err(GatewayError::SessionNotFound)
            }
        }
    }

    /// Creates a session for verified credentials and returns its id.
    pub async fn create_session(
        &self,
        credentials: &Value,
        client: Value,
        protocol_version: Option<String>,
    ) -> Result<SessionId, GatewayError> {
        let id = SessionId::generate().map_err(|_| GatewayError::RngUnavailable)?;
        self.create_session_as(id, credentials, client, protocol_version).await
    }

    /// [`Gateway::create_session`] under a given id (a modern principal record's).
    pub(super) async fn create_session_as(
        &self,
        id: SessionId,
        credentials: &Value,
        client: Value,
        protocol_version: Option<String>,
    ) -> Result<SessionId, GatewayError> {
        self.check_sizes(credentials, &client)?;
        let verified = self.auth.verify(credentials).await?;
        self.check_rate_of(Some(&verified.principal)).await?;
        let stored = self.auth.stored_credentials(credentials, &verified);
        let credentials = &stored;
        let seal = |plain: &[u8], context: &str| {
            self.sealer.seal(plain, context).map_err(|e| GatewayError::SealFailed(e.to_string()))
        };
        let sealed = seal(credentials.to_string().as_bytes(), id.as_str())?;
        // The identity goes into its own field; `identity` stays null for older readers.
        let sealed_identity = match &verified.identity {
            Value::Null => None,
            identity => Some(seal(identity.to_string().as_bytes(), &identity_context(&id))?),
        };
        let now = now_ms();
        let record = SessionRecord {
            schema: SCHEMA_VERSION,
            created_ms: now,
            last_seen_ms: now,
            principal: verified.principal,
            identity: Value::Null,
            sealed_identity,
            client,
            protocol_version,
            sealed_credentials: sealed,
            state: Value::Object(serde_json::Map::new()),
            state_rev: 0,
            log_level: None,
        };
        self.admit(&id, &record).await?;
        SessionEvent::Created.emit(&self.metrics);
        tracing::debug!(session = ?id, principal = %record.principal, "session created");
        Ok(id)
    }

    /// The session's credentials, opened.
    pub fn credentials(&self, id: &SessionId, record: &SessionRecord) -> Result<Value, GatewayError> {
        let plain = self.sealer.open(&record.sealed_credentials, id.as_str()).map_err(|e| {
            tracing::error!(session = ?id, error = %e, "cannot open sealed credentials");
            GatewayError::key_mismatch()
        })?;
        serde_json::from_slice(&plain)
            .map_err(|_| GatewayError::CredentialsUnreadable("stored credentials are unreadable"))
    }

    /// The identity the credentials check reported (http mode): opened from the sealed
    /// field, else the plain one of a record written by an earlier release.
    pub fn identity(&self, id: &SessionId, record: &SessionRecord) -> Result<Value, GatewayError> {
        let Some(sealed) = &record.sealed_identity else { return Ok(record.identity.clone()) };
        let plain = self.sealer.open(sealed, &identity_context(id)).map_err(|e| {
            tracing::error!(session = ?id, error = %e, "cannot open the sealed identity");
            GatewayError::key_mismatch()
        })?;
        serde_json::from_slice(&plain)
            .map_err(|_| GatewayError::CredentialsUnreadable("the stored identity is unreadable"))
    }

    /// The session `raw_id` names, if it exists and `presented` may use it (see the module
    /// doc). Another principal's session is, to this caller, no session at all.
    pub async fn bind(&self, raw_id: &str, presented: Presented<'_>) -> Result<Bound, GatewayError> {
        self.bind_for(raw_id, presented, None).await
    }

    /// [`Gateway::bind`] for a request: for a tool call, the session is loaded together with
    /// the call's cache entry (one store round trip for a hit, principal check included) and
    /// its credentials are opened once, for the check and the spawn alike.
    pub async fn bind_for(
        &self,
        raw_id: &str,
        presented: Presented<'_>,
        operation: Option<&Operation>,
    ) -> Result<Bound, GatewayError> {
        let id = SessionId::parse(raw_id).ok_or(GatewayError::SessionNotFound)?;
        let field = match operation {
            Some(Operation::CallTool { server, tool, arguments, .. }) => {
                Some(self.cache_slot(cache_field(server, tool, arguments)))
            }
            _ => None,
        };
        let bound = self.bind_session(id, presented, field).await?;
        // Before anything runs: a 403 the client can step up from (auth mode `oauth`). A
        // server's resources and prompts need its scopes as its tools do.
        match operation {
            Some(Operation::CallTool { server, tool, .. }) => {
                self.auth.check_scopes(&bound.credentials, server, Some(tool))?;
            }
            Some(Operation::Forward { server, .. }) => {
                self.auth.check_scopes(&bound.credentials, server, None)?
            }
            _ => {}
        }
        Ok(bound)
    }

    /// [`Gateway::bind_for`] with the session id parsed and the cache field to read with
    /// the session (see [`Gateway::cache_slot`]) already chosen.
    pub async fn bind_session(
        &self,
        id: SessionId,
        presented: Presented<'_>,
        field: Option<String>,
    ) -> Result<Bound, GatewayError> {
        if self.auth.is_oauth() {
            return self.bind_oauth(id, presented, field).await;
        }
        // The principal's rate is taken alongside the load when the credentials name it.
        let known = self.auth.known_principal(presented.token);
        let (loaded, rate) = tokio::join!(self.load_for(&id, field), self.check_rate_of(known.as_deref()));
        rate?;
        let (record, prefetched) = loaded?;
        let credentials = self.credentials(&id, &record)?;
        if !self.admits(&record, &credentials, presented) {
            SessionEvent::NotFound.emit(&self.metrics);
            return Err(GatewayError::SessionNotFound);
        }
        if known.is_none() {
            self.check_rate(&record).await?;
        }
        Ok(Bound { id, record, credentials, prefetched })
    }

    /// [`Gateway::bind_session`] in auth mode `oauth`: the presented access token is checked,
    /// and its principal must be the session's.
    async fn bind_oauth(
        &self,
        id: SessionId,
        presented: Presented<'_>,
        field: Option<String>,
    ) -> Result<Bound, GatewayError> {
        let Some(token) = presented.token else { return Err(AuthError::Missing.into()) };
        let verified = self.auth.verify_bearer(token).await?;
        let (loaded, rate) =
            tokio::join!(self.load_for(&id, field), self.check_rate_of(Some(&verified.principal)));
        rate?;
        let (record, prefetched) = loaded?;
        // Principals are not secret, but compare in constant time all the same.
        if blake3::hash(record.principal.as_bytes()) != blake3::hash(verified.principal.as_bytes()) {
            SessionEvent::NotFound.emit(&self.metrics);
            return Err(GatewayError::SessionNotFound);
        }
        let mut credentials = self.credentials(&id, &record)?;
        self.auth.request_credentials(&mut credentials, &verified, token);
        Ok(Bound { id, record, credentials, prefetched })
    }

    /// The session, and the cache entry `field` when there is one to read with it.
    async fn load_for(
        &self,
        id: &SessionId,
        field: Option<String>,
    ) -> Result<(SessionRecord, Option<Prefetched>), GatewayError> {
        let Some(field) = field else { return Ok((self.load_session(id).await?, None)) };
        let loaded = self.store.load_with_cache(id, now_ms(), self.config.idle_ttl(), &field).await?;
        let Some((record, entry)) = loaded else {
            SessionEvent::NotFound.emit(&self.metrics);
            return Err(GatewayError::SessionNotFound);
        };
        Ok((record, Some(Prefetched { field, entry })))
    }

    /// Whether `presented` may use a session with this record and these credentials.
    fn admits(&self, record: &SessionRecord, credentials: &Value, presented: Presented<'_>) -> bool {
        let own = credentials.get("token").and_then(Value::as_str);
        match presented.token {
            Some(token) => same_token(own, Some(token)),
            None if self.config.auth.require_principal => false,
            // The seed's API: the session id alone opens a session made on `/init`, never
            // one made on `/mcp` (those have a protocol version).
            None if presented.door == Door::Legacy => record.protocol_version.is_none(),
            // `/mcp`: a session opened without a token (auth mode `none`) is bound to nobody.
            None => own.is_none(),
        }
    }

    /// What a client may see of a session.
    pub fn view<'a>(&self, id: &'a SessionId, record: &'a SessionRecord) -> SessionView<'a> {
        SessionView { id, record, idle_ttl_secs: self.config.idle_ttl_secs }
    }

    /// Applies an RFC 7396 merge patch (an object) to the session's `state`
    /// (compare-and-set, retried under contention); returns the record as written.
    pub async fn patch_state(
        &self,
        id: &SessionId,
        patch: serde_json::Map<String, Value>,
    ) -> Result<SessionRecord, GatewayError> {
        let patch = Value::Object(patch);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let mut record = self.load_session(id).await?;
            if attempt == 0 {
                self.check_rate(&record).await?;
            }
            merge_patch(&mut record.state, &patch);
            let text = record.state.to_string();
            if text.len() > self.config.max_state_bytes {
                return Err(GatewayError::StateTooLarge(self.config.max_state_bytes));
            }
            let outcome = self
                .store
                .replace_state(id, record.state_rev, &text, now_ms(), self.config.idle_ttl())
                .await?;
            match outcome {
                CasOutcome::Applied => {
                    record.state_rev += 1;
                    return Ok(record);
                }
                CasOutcome::Missing => return Err(GatewayError::SessionNotFound),
                CasOutcome::Conflict if attempt >= 3 => {
                    // Spread contending writers apart a little.
                    let jitter = u64::from(
                        SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.subsec_nanos())
                            % 3000,
                    );
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                }
                CasOutcome::Conflict => {}
            }
        }
        Err(GatewayError::Contention)
    }

    /// Ends a session now. Its warm children go, here and (through the store's pub/sub) on
    /// every other worker.
    pub async fn delete_session(&self, id: &SessionId) -> Result<(), GatewayError> {
        if self.store.delete(id).await? {
            SessionEvent::Deleted.emit(&self.metrics);
            self.forget_everywhere(id).await;
            Ok(())
        } else {
            Err(GatewayError::SessionNotFound)
        }
    }

    /// `logging/setLevel` (a level the adapter checked): kept in the session, so every
    /// child spawned for it gets the level.
    pub async fn set_log_level(&self, id: &SessionId, level: &str) -> Result<(), GatewayError> {
        if self.store.set_field(id, "log_level", level, now_ms(), self.config.idle_ttl()).await? {
            Ok(())
        } else {
            Err(GatewayError::SessionNotFound)
        }
    }
}

/// The associated data of a session's sealed identity: never that of its credentials.
fn identity_context(id: &SessionId) -> String {
    format!("{}.identity", id.as_str())
}

/// Whether two tokens are present and equal (compared in constant time). A missing token
/// equals nothing, not even another missing one.
fn same_token(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        // blake3::Hash compares in constant time.
        (Some(a), Some(b)) => blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes()),
        _ => false,
    }
}

#[cfg(test)]
mod binding_tests {
    use super::same_token;

    #[test]
    fn a_missing_token_equals_nothing() {
        assert!(same_token(Some("t"), Some("t")));
        assert!(!same_token(Some("t"), Some("u")));
        assert!(!same_token(None, Some("t")));
        assert!(!same_token(Some("t"), None));
        assert!(!same_token(None, None));
    }
}
