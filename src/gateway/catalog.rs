//! The tool catalogue: each server's tool list (allow/deny applied), kept per worker and
//! shared through the store, merged and namespaced `server.tool` when there are several
//! servers; and the merged `InitializeResult` of `/mcp`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Gateway, GatewayError};
use crate::protocol::jsonrpc::json_string;
use crate::results::canonical;
use crate::telemetry::events::store::{RecordUnreadable, StoredKind, UnreadableReason};
use crate::telemetry::events::{CacheLookup, CacheOp, Emit};
use crate::upstream::{Client, Outcome, UpstreamError};

/// Most pages of a server's `tools/list` followed.
const MAX_LIST_PAGES: usize = 50;

/// Most tool lists kept by one worker (one per server and capabilities set seen within the TTL).
const MAX_LISTS: usize = 1024;

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
        if lists.len() >= MAX_LISTS {
            lists.clear();
        }
        lists.insert(key.to_string(), (Instant::now(), list));
    }
}

impl Gateway {
    /// Which server a tool belongs to, and its name there. With one server, names are
    /// as the server gives them; with several, they are `server.tool`.
    pub fn route_tool<'a>(&'a self, tool: &'a str) -> Result<(&'a str, &'a str), GatewayError> {
        let names = self.manager.server_names();
        if let [only] = names.as_slice() {
            return Ok((only, tool));
        }
        tool.split_once('.')
            .filter(|(server, _)| names.contains(server))
            .ok_or_else(|| GatewayError::UnknownTool(tool.to_string()))
    }

    /// Whether a server offers a tool under its allow- and deny-lists.
    pub fn allowed(&self, server: &str, tool: &str) -> bool {
        let Some(config) = self.config.servers.get(server) else { return false };
        (config.allow_tools.is_empty() || config.allow_tools.iter().any(|t| t == tool))
            && !config.deny_tools.iter().any(|t| t == tool)
    }

    /// Every server's tools, namespaced `server.tool` when there are several. A server that
    /// fails is logged and skipped: the others' tools stay usable.
    pub async fn all_tools(
        &self,
        credentials: &Value,
        capabilities: Option<&RawValue>,
    ) -> Result<Vec<Value>, GatewayError> {
        let names = self.manager.server_names();
        let prefixed = names.len() > 1;
        let mut all = Vec::new();
        for server in &names {
            let tools = match self.server_tools(server, credentials, capabilities).await {
                Ok(tools) => tools,
                Err(e) if prefixed => {
                    tracing::warn!(server, error = %e, "server failed to list its tools; skipped");
                    CacheLookup(CacheOp::ToolsServerFailed).emit(&self.metrics);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for tool in tools.iter() {
                // Auth mode `oauth`: a tool the token has no scopes for is not listed.
                let name = tool.get("name").and_then(Value::as_str);
                if self.auth.check_scopes(credentials, server, name).is_err() {
                    continue;
                }
                let mut tool = tool.clone();
                if prefixed
                    && let Some(name) =
                        tool.get("name").and_then(Value::as_str).map(|n| format!("{server}.{n}"))
                {
                    tool["name"] = Value::String(name);
                }
                all.push(tool);
            }
        }
        Ok(all)
    }

    /// A server's tools (allow/deny applied), from this worker, the shared store, or one spawn.
    /// Servers may offer tools according to what the client supports (sampling, roots…), so
    /// lists are kept per client-capabilities set.
    async fn server_tools(
        &self,
        server: &str,
        credentials: &Value,
        capabilities: Option<&RawValue>,
    ) -> Result<Arc<Vec<Value>>, GatewayError> {
        let capabilities = capabilities.filter(|c| c.get().trim() != "{}");
        let key = self.tools_key(server, capabilities);
        if let Some(list) = self.catalog.get(&key, self.config.tools_cache_ttl) {
            return Ok(list);
        }
        if let Some(cached) = self.store.get_shared(&key).await?
            && let Some(tools) = self.readable_list(&cached)
        {
            CacheLookup(CacheOp::ToolsHit).emit(&self.metrics);
            let list = Arc::new(tools);
            self.catalog.put(&key, list.clone());
            return Ok(list);
        }
        CacheLookup(CacheOp::ToolsMiss).emit(&self.metrics);
        let tools = self.fetch_tools(server, credentials, capabilities).await?;
        Ok(self.keep_tools(&key, tools).await)
    }

    /// Keeps a server's tool list (as its child gave it alongside a call) for the fleet: allow
    /// and deny applied, here and in the store, under the client-capabilities set it was for.
    pub(super) async fn remember_tools(
        &self,
        server: &str,
        capabilities: Option<&RawValue>,
        tools: Vec<Value>,
    ) -> Arc<Vec<Value>> {
        let capabilities = capabilities.filter(|c| c.get().trim() != "{}");
        let offered: Vec<Value> = tools
            .into_iter()
            .filter(|t| t.get("name").and_then(Value::as_str).is_some_and(|n| self.allowed(server, n)))
            .collect();
        self.keep_tools(&self.tools_key(server, capabilities), offered).await
    }

    /// Keeps a tool list here and in the store.
    async fn keep_tools(&self, key: &str, tools: Vec<Value>) -> Arc<Vec<Value>> {
        let text = Value::Array(tools.clone()).to_string();
        if let Err(e) = self.store.put_shared(key, &text, self.config.tools_cache_ttl).await {
            tracing::warn!(error = %e, "could not cache the tool list");
        }
        let list = Arc::new(tools);
        self.catalog.put(key, list.clone());
        list
    }

    /// Asks a fresh instance of the server for its tools, following pages (bounded).
    async fn fetch_tools(
        &self,
        server: &str,
        credentials: &Value,
        capabilities: Option<&RawValue>,
    ) -> Result<Vec<Value>, GatewayError> {
        let protocol = |e: serde_json::Error| UpstreamError::Protocol(e.to_string());
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let params = match &cursor {
                Some(c) => format!(r#"{{"cursor":{}}}"#, json_string(c)),
                None => "{}".to_string(),
            };
            let params = RawValue::from_string(params).map_err(protocol)?;
            let client = Client { capabilities, log_level: None };
            let outcome =
                self.manager.call(server, credentials, client, "tools/list", Some(&params), None).await?;
            let page: Value = serde_json::from_str(outcome.result.get()).map_err(protocol)?;
            if let Some(list) = page.get("tools").and_then(Value::as_array) {
                let offered = |t: &&Value| {
                    t.get("name").and_then(Value::as_str).is_some_and(|n| self.allowed(server, n))
                };
                tools.extend(list.iter().filter(offered).cloned());
            }
            cursor = page.get("nextCursor").and_then(Value::as_str).map(String::from);
            if cursor.is_none() {
                break;
            }
        }
        Ok(tools)
    }

    /// A server's tool list if this worker or the shared store knows it (never spawns): the
    /// one for these client capabilities, else the plain one (annotations do not depend on them).
    pub(super) async fn known_tools(
        &self,
        server: &str,
        capabilities: Option<&RawValue>,
    ) -> Option<Arc<Vec<Value>>> {
        let capabilities = capabilities.filter(|c| c.get().trim() != "{}");
        let mut keys = vec![self.tools_key(server, None)];
        if capabilities.is_some() {
            keys.insert(0, self.tools_key(server, capabilities));
        }
        for key in &keys {
            if let Some(list) = self.catalog.get(key, self.config.tools_cache_ttl) {
                return Some(list);
            }
        }
        for key in &keys {
            if let Some(cached) = self.store.get_shared(key).await.ok().flatten()
                && let Some(list) = self.readable_list(&cached)
            {
                let list = Arc::new(list);
                self.catalog.put(key, list.clone());
                return Some(list);
            }
        }
        None
    }

    /// A stored tool list (a JSON array, unknown fields kept); one in no format this version
    /// knows is a miss, counted.
    fn readable_list(&self, cached: &str) -> Option<Vec<Value>> {
        let list = serde_json::from_str::<Vec<Value>>(cached).ok();
        if list.is_none() {
            let reason = UnreadableReason::Malformed;
            RecordUnreadable { kind: StoredKind::Shared, reason, session: None }.emit(&self.metrics);
        }
        list
    }

    /// The cache key of a server's tool list for a client-capabilities set.
    fn tools_key(&self, server: &str, capabilities: Option<&RawValue>) -> String {
        let base = format!("tools:{server}:{}", self.manager.config_hash(server).unwrap_or("none"));
        match capabilities {
            Some(caps) => {
                let canonical =
                    serde_json::from_str::<Value>(caps.get()).map(|v| canonical(&v)).unwrap_or_default();
                format!("{base}:caps-{}", &blake3::hash(canonical.as_bytes()).to_hex()[..12])
            }
            None => base,
        }
    }

    /// Capabilities and server info of a fronted server, cached per config hash.
    async fn upstream_init(&self, server: &str, credentials: &Value) -> Result<Value, GatewayError> {
        let key = format!("init:{server}:{}", self.manager.config_hash(server).unwrap_or("none"));
        if let Ok(Some(cached)) = self.store.get_shared(&key).await
            && let Ok(value) = serde_json::from_str(&cached)
        {
            return Ok(value);
        }
        let Outcome { init, .. } =
            self.manager.call(server, credentials, Client::default(), "ping", None, None).await?;
        let _ = self.store.put_shared(&key, init.get(), self.config.tools_cache_ttl).await;
        Ok(serde_json::from_str(init.get()).unwrap_or(Value::Null))
    }

    /// The `InitializeResult` of `/mcp` for `version`: the servers' capabilities merged, the
    /// server info and instructions of a single server (else the gateway's own).
    pub async fn initialize_result(&self, credentials: &Value, version: &str) -> Result<Value, GatewayError> {
        let names = self.manager.server_names();
        let mut capabilities = serde_json::Map::new();
        let mut server_info =
            serde_json::json!({"name": "switchboard", "version": env!("CARGO_PKG_VERSION")});
        let mut instructions = None;
        for server in &names {
            let init = self.upstream_init(server, credentials).await?;
            if let Some(caps) = init.get("capabilities").and_then(|c| c.as_object()) {
                for (k, v) in caps {
                    capabilities.insert(k.clone(), v.clone());
                }
            }
            if names.len() == 1 {
                server_info = init.get("serverInfo").cloned().unwrap_or(server_info);
                instructions = init.get("instructions").cloned();
            }
        }
        // Children live for one request: no list-changed notifications can be delivered.
        for cap in capabilities.values_mut() {
            if let Some(obj) = cap.as_object_mut()
                && obj.contains_key("listChanged")
            {
                obj.insert("listChanged".into(), Value::Bool(false));
            }
        }
        let mut result = serde_json::json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": server_info,
        });
        if let Some(text) = instructions {
            result["instructions"] = text;
        }
        Ok(result)
    }
}
