//! Results: cache policy, canonical cache keys, jq filters and size caps.
//!
//! Pure functions over JSON: nothing here does I/O. The server decides with
//! [`ToolPolicy`] whether a result may be cached and for how long, and shapes
//! what the client sees with [`ToolPolicy::present`]; the full result is what
//! is cached, the filter and the cap apply on the way out, to hits and misses alike.
//!
//! Sits above [`crate::config`] (it reads the per-tool settings); `config` never
//! imports this module, so the jq filters of a config are compiled here, by
//! [`Policies::from_config`], which `check-config` and worker start-up both run.

use std::collections::HashMap;
use std::time::Duration;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde_json::Value;

use crate::config::{CacheMode, Config, ServerConfig};

/// A compiled jq filter from trusted config (never from clients: a recursive definition
/// can exhaust the stack).
pub struct Filter {
    source: String,
    filter: jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({:?})", self.source)
    }
}

/// Functions left out of the filter language: `env` would expose the worker's secrets;
/// input functions make no sense on one result.
const EXCLUDED: &[&str] = &["env", "input", "inputs"];

impl Filter {
    /// Compiles `source`; the error names what is wrong, for a start-up message.
    pub fn compile(source: &str) -> Result<Self, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .filter(|(name, _, _)| !EXCLUDED.contains(name));
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let program = File { code: source, path: () };
        let modules = loader.load(&arena, program).map_err(|errors| format!("cannot parse: {errors:?}"))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| format!("cannot compile: {errors:?}"))?;
        Ok(Self { source: source.to_string(), filter })
    }

    /// The filter's first output for `input`, as JSON.
    pub fn apply(&self, input: &Value) -> Result<Value, String> {
        let text = input.to_string();
        let value = jaq_json::read::parse_single(text.as_bytes()).map_err(|e| format!("{e:?}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, value)).map(jaq_core::unwrap_valr);
        match out.next() {
            Some(Ok(v)) => serde_json::from_str(&v.to_string()).map_err(|e| e.to_string()),
            Some(Err(e)) => Err(format!("{e:?}")),
            None => Ok(Value::Null),
        }
    }
}

/// What to do with one tool's results.
#[derive(Debug)]
pub struct ToolPolicy {
    pub cache: CacheMode,
    /// How long a cached result is served.
    pub cache_ttl: Duration,
    pub filter: Option<Filter>,
    /// Results larger than this (serialized) are cut, with a visible marker.
    pub max_result_bytes: Option<usize>,
}

impl ToolPolicy {
    /// Builds the policy of `tool` of a server from config, compiling its filter.
    pub fn from_config(server: &ServerConfig, tool: &str, default_ttl: Duration) -> Result<Self, String> {
        let config = server.tools.get(tool);
        let filter = match config.and_then(|c| c.filter.as_deref()) {
            Some(source) => {
                Some(Filter::compile(source).map_err(|e| format!("tool `{tool}`: jq filter: {e}"))?)
            }
            None => None,
        };
        Ok(Self {
            cache: config.map_or(CacheMode::Auto, |c| c.cache),
            cache_ttl: config.and_then(|c| c.cache_ttl_secs).map_or(default_ttl, Duration::from_secs_f64),
            filter,
            max_result_bytes: config.and_then(|c| c.max_result_bytes).or(server.max_result_bytes),
        })
    }

    /// Whether a result of this tool may be cached, given the tool's annotations
    /// (`None` when the tool list is not known yet: then `auto` does not cache).
    pub fn may_cache(&self, annotations: Option<&Value>) -> bool {
        match self.cache {
            CacheMode::Never => false,
            CacheMode::Always => true,
            CacheMode::Auto => annotations.is_some_and(|a| {
                a.get("readOnlyHint") == Some(&Value::Bool(true))
                    && a.get("openWorldHint") == Some(&Value::Bool(false))
            }),
        }
    }

    /// What the client sees of a full result: the filter, then the size cap.
    pub fn present(&self, result: &str, cached: bool) -> String {
        if self.filter.is_none() && self.max_result_bytes.is_none_or(|max| result.len() <= max) && !cached {
            return result.to_string();
        }
        let Ok(mut value) = serde_json::from_str::<Value>(result) else { return result.to_string() };
        if let Some(filter) = &self.filter {
            apply_filter(filter, &mut value);
        }
        if cached && let Some(obj) = value.as_object_mut() {
            let meta = obj.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("switchboard/cached".into(), Value::Bool(true));
            }
        }
        let mut text = value.to_string();
        if let Some(max) = self.max_result_bytes
            && text.len() > max
        {
            text = truncate(&value, text.len(), max);
        }
        text
    }
}

/// Tool policies by server and tool, built once from config (every filter compiled).
pub struct Policies {
    tools: HashMap<(String, String), ToolPolicy>,
    defaults: HashMap<String, ToolPolicy>,
}

impl Policies {
    /// Compiles the policy of every configured tool; the error names the tool
    /// (`servers.NAME.tools.TOOL: …`), for a start-up message.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut tools = HashMap::new();
        let mut defaults = HashMap::new();
        for (name, server) in &config.servers {
            let invalid = |e: String| format!("servers.{name}.tools.{e}");
            for tool in server.tools.keys() {
                let policy = ToolPolicy::from_config(server, tool, config.cache_ttl).map_err(invalid)?;
                tools.insert((name.clone(), tool.clone()), policy);
            }
            let default = ToolPolicy::from_config(server, "", config.cache_ttl).map_err(invalid)?;
            defaults.insert(name.clone(), default);
        }
        Ok(Self { tools, defaults })
    }

    /// The policy of a tool, else its server's default; `None` for an unknown server.
    pub fn get(&self, server: &str, tool: &str) -> Option<&ToolPolicy> {
        self.tools.get(&(server.to_string(), tool.to_string())).or_else(|| self.defaults.get(server))
    }
}

/// Filters `structuredContent`, and every text block that parses as JSON.
fn apply_filter(filter: &Filter, result: &mut Value) {
    if let Some(structured) = result.get_mut("structuredContent") {
        match filter.apply(structured) {
            Ok(v) => *structured = v,
            Err(e) => tracing::warn!(filter = %filter.source, error = %e, "filter failed; result left whole"),
        }
    }
    if let Some(blocks) = result.get_mut("content").and_then(Value::as_array_mut) {
        for block in blocks {
            if block.get("type").and_then(Value::as_str) != Some("text") {
                continue;
            }
            let Some(parsed) =
                block.get("text").and_then(Value::as_str).and_then(|t| serde_json::from_str::<Value>(t).ok())
            else {
                continue;
            };
            if let Ok(v) = filter.apply(&parsed) {
                block["text"] = Value::String(v.to_string());
            }
        }
    }
}

/// Cuts a result to about `max` bytes: text blocks shortened, `structuredContent` dropped
/// when it does not fit, and a visible marker with the original size.
pub fn truncate(result: &Value, original: usize, max: usize) -> String {
    let marker = format!("[truncated by switchboard: the full result is {original} bytes]");
    let mut out = result.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.remove("structuredContent");
        let mut budget = max.saturating_sub(marker.len() + 200);
        if let Some(blocks) = obj.get_mut("content").and_then(Value::as_array_mut) {
            blocks.retain(|b| b.get("type").and_then(Value::as_str) == Some("text"));
            for block in blocks.iter_mut() {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                let cut = floor_char_boundary(text, budget.min(text.len()));
                budget -= cut;
                block["text"] = Value::String(text[..cut].to_string());
            }
            blocks.push(serde_json::json!({"type": "text", "text": marker}));
        }
        let meta = obj.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("switchboard/truncated".into(), serde_json::json!({ "original_bytes": original }));
        }
    }
    out.to_string()
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The canonical text of JSON arguments: keys sorted, integral floats as integers.
pub fn canonical(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    out.push_str(&format!("{}", f as i64))
                }
                _ => out.push_str(&n.to_string()),
            },
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The cache field of one call: a hash of server, tool and canonical arguments.
pub fn cache_field(server: &str, tool: &str, arguments: &Value) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [server, "\0", tool, "\0", &canonical(arguments)] {
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex()[..32].to_string()
}

/// Whether a raw `CallToolResult` reports a tool error (never cached).
pub fn is_error(result: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "isError", default)]
        is_error: Option<bool>,
    }
    serde_json::from_str::<Probe>(result).ok().and_then(|p| p.is_error).unwrap_or(false)
}

#[cfg(test)]
mod tests;
