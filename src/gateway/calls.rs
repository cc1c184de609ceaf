//! Tool calls through the result cache, shared by `/call-tool` and `tools/call` on `/mcp`.
//!
//! A cacheable call makes one store round trip on a hit (session touch and cache
//! read in one script; on `/mcp` that same read binds the session) and spawns
//! nothing. Identical concurrent misses on any workers spawn once: the first takes a
//! short lock in the store, the others wait (bounded) for its result, then run the
//! call themselves. A call whose policy needs a tool list nobody has yet learns it
//! from its own child (no extra spawn) and is cached if the tool qualifies.
//!
//! With `cache_seal`, entries are sealed at rest under the secret key, bound to their
//! session and field, and kept under their own field names (`sealed:` and the key), so a
//! worker of an earlier release, which reads entries as plain text, misses them.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Bound, Gateway, GatewayError};
use crate::config::CacheMode;
use crate::results::{ToolPolicy, cache_field, is_error};
use crate::session::{SessionId, SessionRecord, now_ms};
use crate::telemetry::events::store::{RecordUnreadable, StoredKind, UnreadableReason};
use crate::telemetry::events::{CacheLookup, CacheOp, Emit};
use crate::upstream::{Call, Client, Outcome, Relay};

/// Longest wait for another worker's identical call before running it here.
const SINGLE_FLIGHT_WAIT: Duration = Duration::from_secs(15);

/// How often a waiting call looks for the other worker's result.
const SINGLE_FLIGHT_POLL: Duration = Duration::from_millis(25);

/// Lifetime of a single-flight lock: past it a crashed holder no longer blocks anyone.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// The field-name prefix of sealed cache entries (plain entries use the bare key).
const SEALED_PREFIX: &str = "sealed:";

/// A tool call as the gateway understands it.
pub struct ToolCall<'a> {
    pub server: &'a str,
    /// The tool's name on its server.
    pub tool: &'a str,
    /// The arguments, for the cache key.
    pub arguments: &'a Value,
    /// The `tools/call` params sent to the server, raw.
    pub params: &'a RawValue,
    /// `false` bypasses the cache.
    pub use_cache: bool,
    /// The route it came by, for the activity log.
    pub route: &'static str,
}

/// One call on its way: what it needs at every step, so the steps stay small.
struct Run<'a> {
    gateway: &'a Gateway,
    id: &'a SessionId,
    call: &'a ToolCall<'a>,
    client: Client<'a>,
    relay: Option<&'a Relay>,
    policy: Option<&'a ToolPolicy>,
    /// The session as bound on `/mcp`: its record, its credentials (opened once) and the
    /// call's cache entry, read in the same store round trip.
    bound: Option<&'a Bound>,
}

impl Gateway {
    /// The store field of the cache entry with key `field` (see `results::cache_field`):
    /// sealed entries have names of their own.
    pub fn cache_slot(&self, field: String) -> String {
        if self.config.cache_seal() { format!("{SEALED_PREFIX}{field}") } else { field }
    }

    /// The cache slot a call reads when it may use the cache: what to bind its session with,
    /// so a hit is one store round trip.
    pub fn call_slot(&self, call: &ToolCall<'_>) -> Option<String> {
        call.use_cache.then(|| self.cache_slot(cache_field(call.server, call.tool, call.arguments)))
    }

    /// A cache entry as stored: sealed (bound to the session and the slot) when the slot
    /// is a sealed one.
    fn seal_entry(&self, id: &SessionId, slot: &str, entry: String) -> Result<String, GatewayError> {
        if !slot.starts_with(SEALED_PREFIX) {
            return Ok(entry);
        }
        self.sealer
            .seal(entry.as_bytes(), &entry_context(id, slot))
            .map_err(|e| GatewayError::SealFailed(e.to_string()))
    }

    /// A stored cache entry, opened; one that does not open (another key, moved, altered)
    /// is a miss.
    fn open_entry(&self, id: &SessionId, slot: &str, stored: String) -> Option<String> {
        if !slot.starts_with(SEALED_PREFIX) {
            return Some(stored);
        }
        match self.sealer.open(&stored, &entry_context(id, slot)) {
            Ok(plain) => String::from_utf8(plain.to_vec()).ok(),
            Err(e) => {
                tracing::debug!(session = ?id, error = %e, "a sealed cache entry does not open: a miss");
                None
            }
        }
    }

    /// Runs a tool call through the cache; returns what the client sees and whether it was a hit.
    /// Every call is recorded in the session's activity log (off the response path).
    pub async fn call_tool(
        &self,
        id: &SessionId,
        call: &ToolCall<'_>,
        client: Client<'_>,
        relay: Option<&Relay>,
    ) -> Result<(String, bool), GatewayError> {
        self.call_tool_in(id, None, call, client, relay).await
    }

    /// [`Gateway::call_tool`] for a session already bound (see [`Gateway::bind_for`]): no
    /// second load, no second opening of its credentials.
    pub async fn call_tool_bound(
        &self,
        session: &Bound,
        call: &ToolCall<'_>,
        client: Client<'_>,
        relay: Option<&Relay>,
    ) -> Result<(String, bool), GatewayError> {
        self.call_tool_in(&session.id, Some(session), call, client, relay).await
    }

    async fn call_tool_in(
        &self,
        id: &SessionId,
        bound: Option<&Bound>,
        call: &ToolCall<'_>,
        client: Client<'_>,
        relay: Option<&Relay>,
    ) -> Result<(String, bool), GatewayError> {
        let started = Instant::now();
        let policy = self.policies.get(call.server, call.tool);
        let run = Run { gateway: self, id, call, client, relay, policy, bound };
        let result = run.cached().await;
        self.log_activity(id, call, &result, started.elapsed());
        result
    }

    /// Appends the call to the session's activity log, in the background.
    fn log_activity(
        &self,
        id: &SessionId,
        call: &ToolCall<'_>,
        result: &Result<(String, bool), GatewayError>,
        took: Duration,
    ) {
        let outcome = match result {
            Ok((_, true)) => "cached".to_string(),
            Ok((raw, false)) if is_error(raw) => "tool_error".to_string(),
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().to_string(),
        };
        let entry = serde_json::json!({
            "at_ms": now_ms(),
            "route": call.route,
            "tool": format!("{}.{}", call.server, call.tool),
            "ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "outcome": outcome,
            "worker": self.relay.worker_id(),
        })
        .to_string();
        let (store, id, ttl) = (self.store.clone(), id.clone(), self.config.idle_ttl());
        tokio::spawn(async move {
            if let Err(e) = store.log_activity(&id, &entry, ttl).await {
                tracing::debug!(error = %e, "could not record activity");
            }
        });
    }
}

impl Run<'_> {
    async fn cached(&self) -> Result<(String, bool), GatewayError> {
        let (gateway, call) = (self.gateway, self.call);
        if !gateway.allowed(call.server, call.tool) {
            return Err(GatewayError::ToolDenied(call.tool.to_string()));
        }
        if let Some(bound) = self.bound {
            // Auth mode `oauth`: the scopes of the server and tool, cache hits included.
            gateway.auth.check_scopes(&bound.credentials, call.server, Some(call.tool))?;
        }
        let cacheable = self.cacheable().await;
        if cacheable == Some(false) {
            CacheLookup(CacheOp::Bypass).emit(&gateway.metrics);
            let record = match self.bound {
                Some(bound) => Cow::Borrowed(&bound.record),
                None => Cow::Owned(gateway.open_session(self.id).await?),
            };
            let outcome = self.run(&record, false).await?;
            return Ok((self.present(outcome.result.get(), false), false));
        }
        let field = gateway.cache_slot(cache_field(call.server, call.tool, call.arguments));
        let (record, cached) = self.load_with_cache(&field).await?;
        let cached = cached.and_then(|stored| gateway.open_entry(self.id, &field, stored));
        if let Some(hit) = cached.as_deref().and_then(|entry| fresh(entry, &gateway.metrics)) {
            CacheLookup(CacheOp::Hit).emit(&gateway.metrics);
            return Ok((self.present(hit, true), true));
        }
        if cacheable.is_none() {
            CacheLookup(CacheOp::MissPolicyUnknown).emit(&gateway.metrics);
            return self.learn_and_run(&record, &field).await;
        }
        CacheLookup(CacheOp::Miss).emit(&gateway.metrics);
        if gateway.store.try_lock(self.id, &field, LOCK_TTL).await? {
            let result = self.run_and_store(&record, &field).await;
            if let Err(e) = gateway.store.unlock(self.id, &field).await {
                tracing::warn!(error = %e, "could not release a cache lock; it expires by itself");
            }
            return Ok((self.present(&result?, false), false));
        }
        // Someone else runs this very call: wait for its result, bounded.
        let deadline = tokio::time::Instant::now() + SINGLE_FLIGHT_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(SINGLE_FLIGHT_POLL).await;
            if let Ok(Some(stored)) = gateway.store.cache_get(self.id, &field).await
                && let Some(entry) = gateway.open_entry(self.id, &field, stored)
                && let Some(hit) = fresh(&entry, &gateway.metrics)
            {
                CacheLookup(CacheOp::HitAfterWait).emit(&gateway.metrics);
                return Ok((self.present(hit, true), true));
            }
        }
        let raw = self.run_and_store(&record, &field).await?;
        Ok((self.present(&raw, false), false))
    }

    /// Whether this call may be served from and stored in the cache: asked for, and allowed
    /// by the tool's policy given its annotations. `None`: the policy needs the tool list and
    /// neither this worker nor the store has it yet.
    async fn cacheable(&self) -> Option<bool> {
        let Some(policy) = self.policy.filter(|_| self.call.use_cache) else { return Some(false) };
        if policy.cache != CacheMode::Auto {
            return Some(policy.may_cache(None));
        }
        let list = self.gateway.known_tools(self.call.server, self.client.capabilities).await?;
        Some(policy.may_cache(annotations_in(&list, self.call.tool).as_ref()))
    }

    /// The session record and the call's cache entry: as read when the session was bound,
    /// else in one store round trip (which also resets the session's idle TTL).
    async fn load_with_cache(
        &self,
        field: &str,
    ) -> Result<(Cow<'_, SessionRecord>, Option<String>), GatewayError> {
        if let Some(bound) = self.bound
            && let Some(prefetched) = bound.prefetched.as_ref().filter(|p| p.field == field)
        {
            return Ok((Cow::Borrowed(&bound.record), prefetched.entry.clone()));
        }
        let gateway = self.gateway;
        let loaded =
            gateway.store.load_with_cache(self.id, now_ms(), gateway.config.idle_ttl(), field).await?;
        let (record, cached) = loaded.ok_or(GatewayError::SessionNotFound)?;
        if self.bound.is_none() {
            // `/call-tool` names only the session: its principal is known now.
            gateway.check_rate(&record).await?;
        }
        Ok((Cow::Owned(record), cached))
    }

    /// What the client sees of a full result.
    fn present(&self, raw: &str, cached: bool) -> String {
        self.policy.map_or_else(|| raw.to_string(), |p| p.present(raw, cached))
    }

    /// Runs the call on a server with the session's credentials (a warm child of the session
    /// when one is ready); with `list_tools`, the same child lists the server's tools too.
    async fn run(&self, record: &SessionRecord, list_tools: bool) -> Result<Outcome, GatewayError> {
        let gateway = self.gateway;
        let credentials = match self.bound {
            Some(bound) => Cow::Borrowed(&bound.credentials),
            None => Cow::Owned(gateway.credentials(self.id, record)?),
        };
        let call = Call {
            server: self.call.server,
            credentials: &credentials,
            client: self.client,
            method: "tools/call",
            params: Some(self.call.params),
            relay: self.relay,
            session: Some(self.id.as_str()),
            list_tools,
            principal: Some(&record.principal),
        };
        Ok(gateway.manager.call_with(call).await?)
    }

    /// Runs the call and caches its result (not a tool error) for the policy's TTL.
    async fn run_and_store(&self, record: &SessionRecord, field: &str) -> Result<String, GatewayError> {
        let raw = self.run(record, false).await?.result.get().to_string();
        self.store(field, &raw).await;
        Ok(raw)
    }

    /// A call whose policy needs a tool list nobody has: its child also lists the tools, the
    /// list is kept for the fleet, and this very result is cached if the tool qualifies.
    async fn learn_and_run(
        &self,
        record: &SessionRecord,
        field: &str,
    ) -> Result<(String, bool), GatewayError> {
        let outcome = self.run(record, true).await?;
        let raw = outcome.result.get().to_string();
        if let Some(tools) = outcome.tools {
            let list = self.gateway.remember_tools(self.call.server, self.client.capabilities, tools).await;
            if self.policy.is_some_and(|p| p.may_cache(annotations_in(&list, self.call.tool).as_ref())) {
                self.store(field, &raw).await;
            }
        }
        Ok((self.present(&raw, false), false))
    }

    /// Caches a result (not a tool error) for the policy's TTL.
    async fn store(&self, field: &str, raw: &str) {
        if is_error(raw) {
            return;
        }
        let gateway = self.gateway;
        let ttl = self.policy.map_or(gateway.config.cache_ttl, |p| p.cache_ttl);
        let expires = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let entry = match gateway.seal_entry(self.id, field, format!("{expires}|{raw}")) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "could not seal a result; not cached");
                return;
            }
        };
        let config = &gateway.config;
        let stored = gateway
            .store
            .cache_put(self.id, field, &entry, now_ms(), config.idle_ttl(), config.cache_budget_bytes)
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not cache a result");
        }
    }
}

/// The annotations of `tool` in a tool list.
fn annotations_in(list: &[Value], tool: &str) -> Option<Value> {
    list.iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(tool))
        .and_then(|t| t.get("annotations").cloned())
}

/// The associated data of a sealed cache entry: its session and its field, so an entry
/// cannot be moved to another session or answer another call.
fn entry_context(id: &SessionId, slot: &str) -> String {
    format!("{}.cache.{slot}", id.as_str())
}

/// The result of a cache entry `expires|result` that has not expired. An entry in no format
/// this version knows (a newer one's) is a miss, counted, never an answer.
fn fresh<'e>(entry: &'e str, metrics: &crate::telemetry::Metrics) -> Option<&'e str> {
    let Some((expires, raw)) = entry.split_once('|').and_then(|(e, raw)| Some((e.parse::<u64>().ok()?, raw)))
    else {
        let reason = UnreadableReason::Malformed;
        RecordUnreadable { kind: StoredKind::CacheEntry, reason, session: None }.emit(metrics);
        return None;
    };
    (expires > now_ms()).then_some(raw)
}
