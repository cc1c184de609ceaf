//! Tool calls with the result cache, shared by `/call-tool` and `tools/call` on `/mcp`,
//! and the tool catalogue (merged, namespaced lists of every configured server).
//!
//! A cacheable call makes one store round trip on a hit (session touch and cache
//! read in one script) and spawns nothing. Identical concurrent misses on any
//! workers spawn once: the first takes a short lock in the store, the others
//! wait (bounded) for its result, then run the call themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use super::{ApiError, AppState};
use crate::config::CacheMode;
use crate::protocol::jsonrpc::json_string;
use crate::results::{ToolPolicy, cache_field, canonical, is_error};
use crate::session::{SessionId, SessionRecord, now_ms};
use crate::upstream::{Call, Client, Relay, UpstreamError};

/// Longest wait for another worker's identical call before running it here.
const SINGLE_FLIGHT_WAIT: Duration = Duration::from_secs(15);

/// Lifetime of a single-flight lock: past it a crashed holder no longer blocks anyone.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// Most pages of a server's `tools/list` followed.
const MAX_LIST_PAGES: usize = 50;

/// Why a call failed: a gateway problem, or the MCP server's.
#[derive(Debug)]
pub enum CallFailure {
    Api(ApiError),
    Upstream(UpstreamError),
}

impl From<ApiError> for CallFailure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<UpstreamError> for CallFailure {
    fn from(e: UpstreamError) -> Self {
        Self::Upstream(e)
    }
}

impl From<CallFailure> for ApiError {
    fn from(e: CallFailure) -> Self {
        match e {
            CallFailure::Api(e) => e,
            CallFailure::Upstream(e) => e.into(),
        }
    }
}

/// Tool policies by server and tool, built once from config.
pub struct Policies {
    tools: HashMap<(String, String), ToolPolicy>,
    defaults: HashMap<String, ToolPolicy>,
}

impl Policies {
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let mut tools = HashMap::new();
        let mut defaults = HashMap::new();
        for (name, server) in &config.servers {
            for tool in server.tools.keys() {
                tools.insert(
                    (name.clone(), tool.clone()),
                    ToolPolicy::from_config(server, tool, config.cache_ttl)?,
                );
            }
            defaults.insert(name.clone(), ToolPolicy::from_config(server, "", config.cache_ttl)?);
        }
        Ok(Self { tools, defaults })
    }

    fn get(&self, server: &str, tool: &str) -> Option<&ToolPolicy> {
        self.tools.get(&(server.to_string(), tool.to_string())).or_else(|| self.defaults.get(server))
    }
}

/// Tool lists of the servers, as last fetched: shared through the store, kept here too so
/// the cache policy of a call needs no extra round trip.
#[derive(Default)]
pub struct Catalog {
    lists: Mutex<HashMap<String, Listing>>,
}

/// When a tool list was fetched, and the list.
type Listing = (Instant, Arc<Vec<Value>>);

impl Catalog {
    fn get(&self, key: &str, max_age: Duration) -> Option<Arc<Vec<Value>>> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.get(key).filter(|(at, _)| at.elapsed() < max_age).map(|(_, list)| list.clone())
    }

    fn put(&self, key: &str, list: Arc<Vec<Value>>) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: one list per server and capabilities set seen within the TTL.
        if lists.len() >= 1024 {
            lists.clear();
        }
        lists.insert(key.to_string(), (Instant::now(), list));
    }
}

/// Whether a server offers a tool under its allow- and deny-lists.
pub fn allowed(state: &AppState, server: &str, tool: &str) -> bool {
    let Some(config) = state.config.servers.get(server) else { return false };
    (config.allow_tools.is_empty() || config.allow_tools.iter().any(|t| t == tool))
        && !config.deny_tools.iter().any(|t| t == tool)
}

/// A server's tools (allow/deny applied), from this worker, the shared store, or one spawn.
/// Servers may offer tools according to what the client supports (sampling, roots…), so
/// lists are kept per client-capabilities set.
pub async fn server_tools(
    state: &AppState,
    server: &str,
    credentials: &Value,
    capabilities: Option<&RawValue>,
) -> Result<Arc<Vec<Value>>, CallFailure> {
    let capabilities = capabilities.filter(|c| c.get().trim() != "{}");
    let key = tools_key(state, server, capabilities);
    if let Some(list) = state.catalog.get(&key, state.config.tools_cache_ttl) {
        return Ok(list);
    }
    if let Some(cached) = state.store.get_shared(&key).await.map_err(ApiError::from)?
        && let Ok(tools) = serde_json::from_str::<Vec<Value>>(&cached)
    {
        state.metrics.cache("tools_hit");
        let list = Arc::new(tools);
        state.catalog.put(&key, list.clone());
        return Ok(list);
    }
    state.metrics.cache("tools_miss");
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let params = match &cursor {
            Some(c) => format!(r#"{{"cursor":{}}}"#, json_string(c)),
            None => "{}".to_string(),
        };
        let params = RawValue::from_string(params).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let outcome = state
            .manager
            .call(
                server,
                credentials,
                Client { capabilities, log_level: None },
                "tools/list",
                Some(&params),
                None,
            )
            .await?;
        let page: Value = serde_json::from_str(outcome.result.get()).map_err(|e| {
            ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "upstream_protocol", e.to_string())
        })?;
        if let Some(list) = page.get("tools").and_then(Value::as_array) {
            tools.extend(
                list.iter()
                    .filter(|t| {
                        t.get("name").and_then(Value::as_str).is_some_and(|n| allowed(state, server, n))
                    })
                    .cloned(),
            );
        }
        cursor = page.get("nextCursor").and_then(Value::as_str).map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    Ok(remember_tools(state, &key, tools).await)
}

/// Keeps a server's tool list (allow/deny already applied) here and in the store, for the fleet.
async fn remember_tools(state: &AppState, key: &str, tools: Vec<Value>) -> Arc<Vec<Value>> {
    let text = Value::Array(tools.clone()).to_string();
    if let Err(e) = state.store.put_shared(key, &text, state.config.tools_cache_ttl).await {
        tracing::warn!(error = %e, "could not cache the tool list");
    }
    let list = Arc::new(tools);
    state.catalog.put(key, list.clone());
    list
}

/// A server's tool list if this worker or the shared store knows it (never spawns): the
/// one for these client capabilities, else the plain one (annotations do not depend on them).
async fn known_tools(
    state: &AppState,
    server: &str,
    capabilities: Option<&RawValue>,
) -> Option<Arc<Vec<Value>>> {
    let capabilities = capabilities.filter(|c| c.get().trim() != "{}");
    let mut keys = vec![tools_key(state, server, None)];
    if capabilities.is_some() {
        keys.insert(0, tools_key(state, server, capabilities));
    }
    for key in &keys {
        if let Some(list) = state.catalog.get(key, state.config.tools_cache_ttl) {
            return Some(list);
        }
    }
    for key in &keys {
        if let Some(cached) = state.store.get_shared(key).await.ok().flatten()
            && let Ok(list) = serde_json::from_str::<Vec<Value>>(&cached)
        {
            let list = Arc::new(list);
            state.catalog.put(key, list.clone());
            return Some(list);
        }
    }
    None
}

/// The annotations of `tool` in a tool list.
fn annotations_in(list: &[Value], tool: &str) -> Option<Value> {
    list.iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(tool))
        .and_then(|t| t.get("annotations").cloned())
}

/// The cache key of a server's tool list for a client-capabilities set.
fn tools_key(state: &AppState, server: &str, capabilities: Option<&RawValue>) -> String {
    let base = format!("tools:{server}:{}", state.manager.config_hash(server).unwrap_or("none"));
    match capabilities {
        Some(caps) => {
            let canonical =
                serde_json::from_str::<Value>(caps.get()).map(|v| canonical(&v)).unwrap_or_default();
            format!("{base}:caps-{}", &blake3::hash(canonical.as_bytes()).to_hex()[..12])
        }
        None => base,
    }
}

/// Every server's tools, namespaced `server.tool` when there are several. A server that
/// fails is logged and skipped: the others' tools stay usable.
pub async fn all_tools(
    state: &AppState,
    credentials: &Value,
    capabilities: Option<&RawValue>,
) -> Result<Vec<Value>, ApiError> {
    let names = state.manager.server_names();
    let prefixed = names.len() > 1;
    let mut all = Vec::new();
    for server in &names {
        let tools = match server_tools(state, server, credentials, capabilities).await {
            Ok(tools) => tools,
            Err(e) if prefixed => {
                tracing::warn!(server, error = ?e, "server failed to list its tools; skipped");
                state.metrics.cache("tools_server_failed");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for tool in tools.iter() {
            let mut tool = tool.clone();
            if prefixed
                && let Some(name) = tool.get("name").and_then(Value::as_str).map(|n| format!("{server}.{n}"))
            {
                tool["name"] = Value::String(name);
            }
            all.push(tool);
        }
    }
    Ok(all)
}

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

/// Runs a tool call through the cache; returns what the client sees and whether it was a hit.
/// Every call is recorded in the session's activity log (off the response path).
pub async fn call_tool(
    state: &AppState,
    id: &SessionId,
    call: &ToolCall<'_>,
    client: Client<'_>,
    relay: Option<&Relay>,
) -> Result<(String, bool), CallFailure> {
    let started = Instant::now();
    let result = cached_call(state, id, call, client, relay).await;
    let outcome = match &result {
        Ok((_, true)) => "cached".to_string(),
        Ok((raw, false)) if is_error(raw) => "tool_error".to_string(),
        Ok(_) => "ok".to_string(),
        Err(CallFailure::Api(e)) => e.code.to_string(),
        Err(CallFailure::Upstream(e)) => super::error::upstream_status(e).1.to_string(),
    };
    let entry = serde_json::json!({
        "at_ms": now_ms(),
        "route": call.route,
        "tool": format!("{}.{}", call.server, call.tool),
        "ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "outcome": outcome,
        "worker": state.relay.worker_id(),
    })
    .to_string();
    let (store, id, ttl) = (state.store.clone(), id.clone(), state.config.idle_ttl());
    tokio::spawn(async move {
        if let Err(e) = store.log_activity(&id, &entry, ttl).await {
            tracing::debug!(error = %e, "could not record activity");
        }
    });
    result
}

async fn cached_call(
    state: &AppState,
    id: &SessionId,
    call: &ToolCall<'_>,
    client: Client<'_>,
    relay: Option<&Relay>,
) -> Result<(String, bool), CallFailure> {
    if !allowed(state, call.server, call.tool) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "tool_denied",
            format!("the tool `{}` is not offered by this gateway", call.tool),
        )
        .into());
    }
    let policy = state.policies.get(call.server, call.tool);
    let present =
        |raw: &str, cached: bool| policy.map_or_else(|| raw.to_string(), |p| p.present(raw, cached));
    // Only an `auto` policy needs the tool's annotations, and only when the cache is used.
    let auto = policy.is_some_and(|p| p.cache == CacheMode::Auto);
    let known = if call.use_cache && auto {
        known_tools(state, call.server, client.capabilities).await
    } else {
        None
    };
    let cacheable = match (policy, known) {
        _ if !call.use_cache => Some(false),
        (None, _) => Some(false),
        (Some(p), Some(list)) => Some(p.may_cache(annotations_in(&list, call.tool).as_ref())),
        (Some(p), None) if !auto => Some(p.may_cache(None)),
        // `auto` and no list here or in the store: this call's child tells.
        (Some(_), None) => None,
    };
    match cacheable {
        Some(true) => {}
        Some(false) => {
            let record = super::routes::load_session(state, id).await?;
            let credentials = super::routes::credentials(state, id, &record)?;
            let outcome = run(state, id, call, &credentials, client, relay, false).await?;
            return Ok((present(outcome.result.get(), false), false));
        }
        None => return learn_and_call(state, id, call, client, relay).await,
    }
    let field = cache_field(call.server, call.tool, call.arguments);
    let (record, cached) =
        match state.store.load_with_cache(id, now_ms(), state.config.idle_ttl(), &field).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(ApiError::session_not_found().into()),
            Err(e) => return Err(ApiError::from(e).into()),
        };
    if let Some(hit) = cached.as_deref().and_then(fresh) {
        state.metrics.cache("hit");
        return Ok((present(hit, true), true));
    }
    state.metrics.cache("miss");
    let ttl = policy.map_or(state.config.cache_ttl, |p| p.cache_ttl);
    if state.store.try_lock(id, &field, LOCK_TTL).await.map_err(ApiError::from)? {
        let result = run_and_store(state, id, &record, call, &field, ttl, client, relay).await;
        if let Err(e) = state.store.unlock(id, &field).await {
            tracing::warn!(error = %e, "could not release a cache lock; it expires by itself");
        }
        let raw = result?;
        return Ok((present(&raw, false), false));
    }
    // Someone else runs this very call: wait for its result, bounded.
    let deadline = Instant::now() + SINGLE_FLIGHT_WAIT;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if let Ok(Some(entry)) = state.store.cache_get(id, &field).await
            && let Some(hit) = fresh(&entry)
        {
            state.metrics.cache("hit_after_wait");
            return Ok((present(hit, true), true));
        }
    }
    let raw = run_and_store(state, id, &record, call, &field, ttl, client, relay).await?;
    Ok((present(&raw, false), false))
}

#[allow(clippy::too_many_arguments)] // one private step of call_tool, named for what it does
async fn run_and_store(
    state: &AppState,
    id: &SessionId,
    record: &SessionRecord,
    call: &ToolCall<'_>,
    field: &str,
    ttl: Duration,
    client: Client<'_>,
    relay: Option<&Relay>,
) -> Result<String, CallFailure> {
    let credentials = super::routes::credentials(state, id, record)?;
    let outcome = run(state, id, call, &credentials, client, relay, false).await?;
    let raw = outcome.result.get().to_string();
    store_result(state, id, field, ttl, &raw).await;
    Ok(raw)
}

/// A call whose cache policy depends on a tool list nobody has yet: the child spawned for it
/// also answers `tools/list`; the list is kept for the fleet, and this very result is cached
/// if the tool qualifies. A cached entry (someone learnt the policy meanwhile) is served.
async fn learn_and_call(
    state: &AppState,
    id: &SessionId,
    call: &ToolCall<'_>,
    client: Client<'_>,
    relay: Option<&Relay>,
) -> Result<(String, bool), CallFailure> {
    let policy = state.policies.get(call.server, call.tool);
    let present =
        |raw: &str, cached: bool| policy.map_or_else(|| raw.to_string(), |p| p.present(raw, cached));
    let field = cache_field(call.server, call.tool, call.arguments);
    let (record, cached) =
        match state.store.load_with_cache(id, now_ms(), state.config.idle_ttl(), &field).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(ApiError::session_not_found().into()),
            Err(e) => return Err(ApiError::from(e).into()),
        };
    if let Some(hit) = cached.as_deref().and_then(fresh) {
        state.metrics.cache("hit");
        return Ok((present(hit, true), true));
    }
    state.metrics.cache("miss_policy_unknown");
    let credentials = super::routes::credentials(state, id, &record)?;
    let outcome = run(state, id, call, &credentials, client, relay, true).await?;
    let raw = outcome.result.get().to_string();
    if let Some(tools) = outcome.tools {
        let tools: Vec<Value> = tools
            .into_iter()
            .filter(|t| t.get("name").and_then(Value::as_str).is_some_and(|n| allowed(state, call.server, n)))
            .collect();
        let capabilities = client.capabilities.filter(|c| c.get().trim() != "{}");
        let list = remember_tools(state, &tools_key(state, call.server, capabilities), tools).await;
        if let Some(policy) = policy
            && policy.may_cache(annotations_in(&list, call.tool).as_ref())
        {
            store_result(state, id, &field, policy.cache_ttl, &raw).await;
        }
    }
    Ok((present(&raw, false), false))
}

/// Runs `tools/call` for a session (a warm child of it if one is ready).
async fn run(
    state: &AppState,
    id: &SessionId,
    call: &ToolCall<'_>,
    credentials: &Value,
    client: Client<'_>,
    relay: Option<&Relay>,
    list_tools: bool,
) -> Result<crate::upstream::Outcome, UpstreamError> {
    state
        .manager
        .call_with(Call {
            server: call.server,
            credentials,
            client,
            method: "tools/call",
            params: Some(call.params),
            relay,
            session: Some(id.as_str()),
            list_tools,
        })
        .await
}

/// Caches a result (not an error result) for `ttl`.
async fn store_result(state: &AppState, id: &SessionId, field: &str, ttl: Duration, raw: &str) {
    if is_error(raw) {
        return;
    }
    let expires = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let entry = format!("{expires}|{raw}");
    let stored = state
        .store
        .cache_put(id, field, &entry, now_ms(), state.config.idle_ttl(), state.config.cache_budget_bytes)
        .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not cache a result");
    }
}

/// The result of a cache entry `expires|result` that has not expired.
fn fresh(entry: &str) -> Option<&str> {
    let (expires, raw) = entry.split_once('|')?;
    (expires.parse::<u64>().ok()? > now_ms()).then_some(raw)
}
