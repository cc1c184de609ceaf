//! The protocol era spoken to a spawned server (`servers.*.protocol`).
//!
//! `legacy`: `initialize` → `notifications/initialized` → the request. `modern`
//! (2026-07-28): the request alone, with `params._meta` carrying the protocol version,
//! the client's capabilities and the gateway's client info: one round trip instead of
//! three messages, and no handshake to wait for. `auto`: the first child of a config
//! (per config hash) is probed with `server/discover`; a `DiscoverResult` naming a
//! version this build speaks makes the server modern, anything else (a TS-SDK server's
//! `-32601`, any other error, no answer in time) legacy, as the stdio transport's
//! backward-compatibility rule says. The probed child is not wasted: a modern one serves
//! its request at once, a legacy one goes on with `initialize`. What was learnt is kept
//! by the worker and in the store for the fleet ([`EraMemory`]), so a config is probed
//! once, not once per worker or per child.
//!
//! Pure helpers (the `_meta` object, merging it into raw params, reading a
//! `DiscoverResult`) plus the memory's trait; no I/O of its own.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Client;
use crate::config::ServerProtocol;
use crate::protocol::modern::{self, Era};

/// How long a learnt era is kept in the store: a day, so a server upgraded in place (same
/// command, now modern) is spoken to in its new era the next day at the latest.
pub const LEARNT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where the eras learnt in `auto` mode are kept for every worker of the fleet (the store's
/// shared values; the previous release never reads these keys).
#[async_trait]
pub trait EraMemory: Send + Sync {
    /// The value stored under `key`, if any.
    async fn recall(&self, key: &str) -> Option<String>;
    /// Stores `value` under `key` for `ttl` (best effort: a failure only means another probe).
    async fn remember(&self, key: &str, value: &str, ttl: Duration);
}

/// The store key of what was learnt about a server with this config hash.
pub fn memory_key(server: &str, config_hash: &str) -> String {
    format!("era:{server}:{config_hash}")
}

/// The stored form of a learnt era (a JSON object, so later fields can be added).
pub fn stored(era: Era) -> String {
    let name = match era {
        Era::Legacy => "legacy",
        Era::Modern => "modern",
    };
    format!(r#"{{"era":"{name}"}}"#)
}

/// A stored era; `None` for anything this version does not know (then it probes again).
pub fn parse_stored(text: &str) -> Option<Era> {
    match serde_json::from_str::<Value>(text).ok()?.get("era")?.as_str()? {
        "legacy" => Some(Era::Legacy),
        "modern" => Some(Era::Modern),
        _ => None,
    }
}

const UNKNOWN: u8 = 0;
const LEGACY: u8 = 1;
const MODERN: u8 = 2;

/// What a worker knows of a server's era: fixed by its config, or learnt (`auto`).
#[derive(Debug)]
pub struct Known(AtomicU8);

impl Known {
    pub fn new(protocol: ServerProtocol) -> Self {
        Self(AtomicU8::new(match protocol {
            ServerProtocol::Auto => UNKNOWN,
            ServerProtocol::Legacy => LEGACY,
            ServerProtocol::Modern => MODERN,
        }))
    }

    /// The era, once known.
    pub fn get(&self) -> Option<Era> {
        match self.0.load(Ordering::Relaxed) {
            LEGACY => Some(Era::Legacy),
            MODERN => Some(Era::Modern),
            _ => None,
        }
    }

    pub fn set(&self, era: Era) {
        let value = if era == Era::Modern { MODERN } else { LEGACY };
        self.0.store(value, Ordering::Relaxed);
    }
}

/// The `_meta` object every modern request to a child carries: protocol version, the
/// client's capabilities (as the front door knows them; `{}` for none), the gateway's
/// client info and, when the client chose one, its log level.
pub fn meta_object(client: Client<'_>) -> String {
    let info = format!(r#"{{"name":"switchboard","version":"{}"}}"#, env!("CARGO_PKG_VERSION"));
    modern::meta_object(modern::VERSION, client.capabilities.map(RawValue::get), &info, client.log_level)
}

/// `params` with `meta`'s entries added to its `_meta` ([`modern::with_meta`]).
pub fn with_meta(params: Option<&RawValue>, meta: &str) -> Box<RawValue> {
    RawValue::from_string(modern::with_meta(params.map(RawValue::get), meta))
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Whether a `DiscoverResult` names a version this build speaks.
pub fn speaks_modern(discover: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Discover {
        #[serde(default, rename = "supportedVersions")]
        supported_versions: Vec<String>,
    }
    serde_json::from_str::<Discover>(discover.get())
        .is_ok_and(|d| d.supported_versions.iter().any(|v| modern::VERSIONS.contains(&v.as_str())))
}

/// A `DiscoverResult` in the shape of an `InitializeResult` (what the rest of the gateway
/// reads of a server: capabilities, server info, instructions).
pub fn discover_as_init(discover: &RawValue) -> Box<RawValue> {
    let parsed: Value = serde_json::from_str(discover.get()).unwrap_or(Value::Null);
    let mut init = serde_json::json!({
        "protocolVersion": modern::VERSION,
        "capabilities": parsed.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
    });
    if let Some(info) = parsed.get("_meta").and_then(|m| m.get(modern::META_SERVER_INFO)) {
        init["serverInfo"] = info.clone();
    }
    if let Some(instructions) = parsed.get("instructions") {
        init["instructions"] = instructions.clone();
    }
    RawValue::from_string(init.to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// What a cold modern child is taken to have answered when nothing was discovered of it
/// yet: the modern version, no capabilities known.
pub fn unknown_init() -> Box<RawValue> {
    RawValue::from_string(format!(r#"{{"protocolVersion":"{}","capabilities":{{}}}}"#, modern::VERSION))
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Most rounds of `InputRequiredResult` a modern child may ask for one request.
pub const MAX_INPUT_ROUNDS: usize = 8;

/// Whether a result is an `InputRequiredResult` (absent `resultType`: complete).
pub fn is_input_required(result: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "resultType", default)]
        result_type: Option<String>,
    }
    serde_json::from_str::<Head>(result.get())
        .is_ok_and(|h| h.result_type.as_deref() == Some(modern::RESULT_INPUT_REQUIRED))
}

/// The input requests of an `InputRequiredResult` (key, method, raw params) and its
/// `requestState` (raw, echoed as sent).
pub type InputRequests = (Vec<(String, String, Option<Box<RawValue>>)>, Option<Box<RawValue>>);

/// Reads an `InputRequiredResult`; `None` when it is malformed or asks too much.
pub fn input_requests(result: &RawValue) -> Option<InputRequests> {
    let parsed = modern::InputRequired::parse(result.get()).ok()?;
    if parsed.requests.is_empty() {
        return None;
    }
    let requests = parsed.requests.into_iter().map(|(key, r)| (key, r.method, r.params)).collect();
    Some((requests, parsed.state))
}

/// The params of the retry: the request's own, with `inputResponses` (key → raw result)
/// and the `requestState` as the server sent it (byte for byte), if it sent one.
pub fn retry_params(
    params: Option<&RawValue>,
    responses: &[(String, Box<RawValue>)],
    state: Option<&RawValue>,
) -> Option<Box<RawValue>> {
    let answers: serde_json::Map<String, Value> = responses
        .iter()
        .filter_map(|(key, raw)| Some((key.clone(), serde_json::from_str(raw.get()).ok()?)))
        .collect();
    let answers = serde_json::to_string(&answers).ok()?;
    let text = modern::retry_params(params.map(RawValue::get), &answers, state.map(RawValue::get))?;
    RawValue::from_string(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn a_childs_meta_names_the_gateway_and_the_clients_capabilities() {
        let caps = raw(r#"{"sampling":{}}"#);
        let meta = meta_object(Client { capabilities: Some(&caps), log_level: Some("debug") });
        let out: Value = serde_json::from_str(with_meta(Some(&raw(r#"{"name":"t"}"#)), &meta).get()).unwrap();
        assert_eq!(out["name"], "t");
        assert_eq!(out["_meta"][modern::META_CLIENT_INFO]["name"], "switchboard");
        assert_eq!(out["_meta"][modern::META_CLIENT_CAPABILITIES]["sampling"], serde_json::json!({}));
        assert_eq!(out["_meta"][modern::META_LOG_LEVEL], "debug");
    }

    #[test]
    fn a_discover_result_is_modern_only_with_a_version_spoken_here() {
        let discover = raw(
            r#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},
               "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"t","version":"1"}},"instructions":"hi"}"#,
        );
        assert!(speaks_modern(&discover));
        assert!(!speaks_modern(&raw(r#"{"supportedVersions":["2030-01-01"]}"#)));
        assert!(!speaks_modern(&raw("{}")));
        let init: Value = serde_json::from_str(discover_as_init(&discover).get()).unwrap();
        assert_eq!(init["capabilities"]["tools"], serde_json::json!({}));
        assert_eq!(init["serverInfo"]["name"], "t");
        assert_eq!(init["instructions"], "hi");
    }

    #[test]
    fn an_input_required_result_is_read_and_its_retry_echoes_the_state_as_sent() {
        let result =
            raw(r#"{"resultType":"input_required","inputRequests":{"confirm":{"method":"elicitation/create",
               "params":{"message":"ok?"}}},"requestState":"opaque \"state\" { }"}"#);
        assert!(is_input_required(&result));
        assert!(!is_input_required(&raw(r#"{"content":[]}"#)));
        let (requests, state) = input_requests(&result).unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].0.as_str(), requests[0].1.as_str()), ("confirm", "elicitation/create"));
        let answer = raw(r#"{"action":"accept","content":{"confirmed":true}}"#);
        let params = raw(r#"{"name":"t","arguments":{"a":1}}"#);
        let retry = retry_params(Some(&params), &[("confirm".into(), answer)], state.as_deref()).unwrap();
        assert!(retry.get().ends_with(r#","requestState":"opaque \"state\" { }"}"#), "{}", retry.get());
        let parsed: Value = serde_json::from_str(retry.get()).unwrap();
        assert_eq!(parsed["inputResponses"]["confirm"]["action"], "accept");
        assert_eq!(parsed["arguments"]["a"], 1);
        let retry = retry_params(None, &[], None).unwrap();
        assert_eq!(retry.get(), r#"{"inputResponses":{}}"#);
    }

    #[test]
    fn stored_eras_round_trip_and_unknown_ones_are_ignored() {
        for era in [Era::Legacy, Era::Modern] {
            assert_eq!(parse_stored(&stored(era)), Some(era));
        }
        assert_eq!(parse_stored(r#"{"era":"future"}"#), None);
        assert_eq!(parse_stored("garbage"), None);
        let known = Known::new(ServerProtocol::Auto);
        assert_eq!(known.get(), None);
        known.set(Era::Modern);
        assert_eq!(known.get(), Some(Era::Modern));
        assert_eq!(Known::new(ServerProtocol::Legacy).get(), Some(Era::Legacy));
    }
}
