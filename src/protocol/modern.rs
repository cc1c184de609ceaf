//! The modern era of MCP (2026-07-28 and later): stateless requests that carry their
//! protocol version and client capabilities in `params._meta`, `Mcp-Method`/`Mcp-Name`
//! headers that mirror the body, `server/discover` instead of the `initialize` handshake,
//! and `InputRequiredResult` instead of server-to-client requests.
//!
//! Only the vocabulary both sides share lives here (names, codes, the header value
//! encoding, which era a request opens): the front door (`server`/`gateway`), the back
//! door (`upstream`) and the bridge take it from here. Pure: no I/O.

use base64::Engine as _;
use serde_json::Value;

/// The modern revision this build speaks.
pub const VERSION: &str = "2026-07-28";

/// Modern protocol versions the gateway accepts, newest first.
pub const VERSIONS: &[&str] = &[VERSION];

/// `params._meta` key: the protocol version of this request (MUST equal the
/// `MCP-Protocol-Version` header).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `params._meta` key: the capabilities the client declares for this request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `params._meta` key: the client's name and version (SHOULD).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `params._meta` key: the log level the client opts in to for this request.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `params._meta` key on notifications of a `subscriptions/listen` stream.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// `result._meta` key: the server's name and version (SHOULD).
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Request header naming the JSON-RPC method (REQUIRED on every modern request).
pub const METHOD_HEADER: &str = "mcp-method";
/// Request header naming the tool, prompt or resource (`params.name` or `params.uri`) of
/// `tools/call`, `prompts/get` and `resources/read`.
pub const NAME_HEADER: &str = "mcp-name";
/// Prefix of the headers a tool's `x-mcp-header` schema annotation mirrors.
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";

/// The discovery method that replaces the `initialize` handshake.
pub const DISCOVER: &str = "server/discover";
/// The method that opens a stream of change notifications.
pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";

/// Methods of the legacy era that a modern request must not use: the server answers them
/// as unknown methods (HTTP 404, `-32601`).
pub const REMOVED_METHODS: &[&str] =
    &["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

/// `result.resultType` of a finished request.
pub const RESULT_COMPLETE: &str = "complete";
/// `result.resultType` of an `InputRequiredResult`: the client answers `inputRequests`
/// and retries with `inputResponses` and the `requestState`.
pub const RESULT_INPUT_REQUIRED: &str = "input_required";

/// Most input requests one `InputRequiredResult` may carry, as a client reads it.
pub const MAX_INPUT_REQUESTS: usize = 64;

/// An `InputRequiredResult` as a client reads it: the requests by key (in key order) and
/// the `requestState`, raw, to be echoed byte for byte.
#[derive(serde::Deserialize)]
pub struct InputRequired {
    #[serde(rename = "inputRequests", default)]
    pub requests: std::collections::BTreeMap<String, InputAsk>,
    #[serde(rename = "requestState", default)]
    pub state: Option<Box<serde_json::value::RawValue>>,
}

/// One request of an [`InputRequired`]: a method of the legacy era's server-to-client
/// requests (`sampling/createMessage`, `elicitation/create`, `roots/list`) and its params.
#[derive(serde::Deserialize)]
pub struct InputAsk {
    pub method: String,
    #[serde(default)]
    pub params: Option<Box<serde_json::value::RawValue>>,
}

impl InputRequired {
    /// Reads one from a result's text; the error says what is wrong, never a value.
    pub fn parse(result: &str) -> Result<Self, String> {
        let parsed: Self = serde_json::from_str(result)
            .map_err(|e| format!("an InputRequiredResult that cannot be read: {e}"))?;
        if parsed.requests.len() > MAX_INPUT_REQUESTS {
            return Err(format!(
                "an InputRequiredResult asking for more than {MAX_INPUT_REQUESTS} inputs at once"
            ));
        }
        Ok(parsed)
    }
}

/// The error codes the modern era adds (HTTP 400 on Streamable HTTP).
pub mod code {
    /// A mirrored header is missing, malformed or disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// The request needs a client capability the request's `_meta` does not declare.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// The request's protocol version is not one the server speaks; `data` carries
    /// `supported` and `requested`.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

    /// Whether an error code is one a dual-era client reads as "this server is modern"
    /// (the fallback to `initialize` happens on anything else).
    pub fn is_modern(code: i64) -> bool {
        matches!(code, HEADER_MISMATCH | MISSING_REQUIRED_CLIENT_CAPABILITY | UNSUPPORTED_PROTOCOL_VERSION)
    }
}

/// Which era a request (or a peer) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2025-03-26 … 2025-11-25: `initialize`, sessions, server-to-client requests.
    Legacy,
    /// 2026-07-28 and later: stateless, `_meta` on every request.
    Modern,
}

/// Whether `version` names a modern revision (any date from 2026-07-28 on, known or not:
/// a newer client than this build is still modern, and gets `-32022`, not a legacy answer).
pub fn is_modern_version(version: &str) -> bool {
    let version = version.trim();
    version.len() >= 10 && version.is_char_boundary(10) && &version[..10] >= VERSION
}

/// The protocol version a request's `params._meta` declares, if any.
pub fn meta_version(params: Option<&Value>) -> Option<&str> {
    params?.get("_meta")?.get(META_PROTOCOL_VERSION)?.as_str()
}

/// The era a request on the shared endpoint opens: modern when its `MCP-Protocol-Version`
/// header or its `_meta` names a modern revision; legacy otherwise (including `initialize`,
/// which only the legacy era has).
pub fn era_of(header_version: Option<&str>, method: Option<&str>, params: Option<&Value>) -> Era {
    if method == Some("initialize") {
        return Era::Legacy;
    }
    let modern_header = header_version.is_some_and(is_modern_version);
    let modern_meta = meta_version(params).is_some_and(is_modern_version);
    if modern_header || modern_meta { Era::Modern } else { Era::Legacy }
}

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// Decodes a mirrored header value (`Mcp-Name`, `Mcp-Param-*`): surrounding whitespace
/// trimmed, and the `=?base64?…?=` form decoded. `None` when the base64 form is malformed
/// or does not decode to UTF-8.
pub fn decode_header_value(raw: &str) -> Option<String> {
    let value = raw.trim_matches(|c: char| c == ' ' || c == '\t');
    match value.strip_prefix(BASE64_PREFIX).and_then(|rest| rest.strip_suffix(BASE64_SUFFIX)) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// Encodes a value for a mirrored header: as is when it is printable ASCII without
/// surrounding spaces, else in the `=?base64?…?=` form (as the specification requires
/// for non-ASCII values, and for values that would be mistaken for that form).
pub fn encode_header_value(value: &str) -> String {
    let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let looks_encoded = value.starts_with(BASE64_PREFIX) && value.ends_with(BASE64_SUFFIX);
    let plain = printable && !padded && !looks_encoded;
    if plain {
        value.to_owned()
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        format!("{BASE64_PREFIX}{encoded}{BASE64_SUFFIX}")
    }
}

/// The `Mcp-Name` a request must carry: `params.name` for `tools/call` and `prompts/get`,
/// `params.uri` for `resources/read`; `None` for every other method.
pub fn name_of(method: &str, params: Option<&Value>) -> Option<String> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    Some(params?.get(field)?.as_str()?.to_owned())
}

/// The `_meta` object of a modern request, as JSON text: the protocol `version`, the
/// client's capabilities (raw JSON object; `{}` for none), its client info (raw JSON
/// object) and, when given, the log level it opts in to.
pub fn meta_object(
    version: &str,
    capabilities: Option<&str>,
    client_info: &str,
    log_level: Option<&str>,
) -> String {
    let capabilities = capabilities.map(str::trim).filter(|c| c.starts_with('{')).unwrap_or("{}");
    let version = serde_json::to_string(version).unwrap_or_else(|_| format!("\"{VERSION}\""));
    let mut meta = format!(
        r#"{{"{META_PROTOCOL_VERSION}":{version},"{META_CLIENT_CAPABILITIES}":{capabilities},"{META_CLIENT_INFO}":{client_info}"#
    );
    if let Some(level) = log_level.and_then(|l| serde_json::to_string(l).ok()) {
        meta.push_str(&format!(r#","{META_LOG_LEVEL}":{level}"#));
    }
    meta.push('}');
    meta
}

/// Request params (raw JSON text, `None` when absent) with the entries of `meta` (a JSON
/// object's text, from [`meta_object`]) added to their `_meta`: the request's own `_meta`
/// entries (a `progressToken`) are kept, the protocol's keys are `meta`'s. Params that
/// are absent or not an object become `{"_meta": …}`. The result is JSON object text.
pub fn with_meta(params: Option<&str>, meta: &str) -> String {
    let fallback = || format!(r#"{{"_meta":{meta}}}"#);
    let text = params.unwrap_or("").trim();
    let Some(rest) = text.strip_prefix('{').map(str::trim_start) else { return fallback() };
    if !text.contains("\"_meta\"") {
        // No `_meta` in the request: the object is extended as text, byte for byte.
        return if rest.starts_with('}') { fallback() } else { format!(r#"{{"_meta":{meta},{rest}"#) };
    }
    let parsed = serde_json::from_str::<serde_json::Map<String, Value>>(text).ok();
    let ours = serde_json::from_str::<serde_json::Map<String, Value>>(meta).ok();
    let (Some(mut map), Some(ours)) = (parsed, ours) else { return fallback() };
    let entry = map.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
    if !entry.is_object() {
        *entry = Value::Object(Default::default());
    }
    if let Value::Object(theirs) = entry {
        theirs.extend(ours);
    }
    serde_json::to_string(&map).unwrap_or_else(|_| fallback())
}

/// The params of the retry after an `InputRequiredResult`: the request's own (JSON object
/// text; `None`: none) with `inputResponses` (JSON object text, key → the answer) and, when
/// the server sent one, its `requestState` (raw JSON) echoed byte for byte, never parsed or
/// re-encoded. `None` when the params or the responses are not JSON objects.
pub fn retry_params(params: Option<&str>, responses: &str, state: Option<&str>) -> Option<String> {
    let mut map: serde_json::Map<String, Value> = match params {
        Some(p) => serde_json::from_str(p).ok()?,
        None => serde_json::Map::new(),
    };
    let responses: serde_json::Map<String, Value> = serde_json::from_str(responses).ok()?;
    map.insert("inputResponses".into(), Value::Object(responses));
    map.remove("requestState");
    let mut text = serde_json::to_string(&map).ok()?;
    if let Some(state) = state {
        // The map is not empty (it holds `inputResponses`): its text ends with `}`.
        text.pop();
        text.push_str(&format!(r#","requestState":{}}}"#, state.trim()));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn modern_versions_are_dates_from_2026_07_28_on() {
        assert!(is_modern_version("2026-07-28"));
        assert!(is_modern_version(" 2027-01-01 "));
        assert!(!is_modern_version("2025-11-25"));
        assert!(!is_modern_version("2026"));
        assert!(!is_modern_version("2026-07-2é"));
    }

    #[test]
    fn the_era_follows_the_header_or_the_meta_but_initialize_is_legacy() {
        let meta = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}});
        assert_eq!(era_of(None, Some("tools/list"), Some(&meta)), Era::Modern);
        assert_eq!(era_of(Some("2026-07-28"), Some("server/discover"), None), Era::Modern);
        assert_eq!(era_of(Some("2025-11-25"), Some("tools/list"), None), Era::Legacy);
        assert_eq!(era_of(Some("2026-07-28"), Some("initialize"), Some(&meta)), Era::Legacy);
    }

    #[test]
    fn header_values_round_trip_through_the_base64_form() {
        for value in ["get_weather", "Hello, 世界", " padded ", "=?base64?abc?="] {
            assert_eq!(decode_header_value(&encode_header_value(value)).as_deref(), Some(value));
        }
        assert_eq!(encode_header_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(decode_header_value("  tools_x \t").as_deref(), Some("tools_x"));
        assert_eq!(decode_header_value("=?base64?***?="), None);
    }

    #[test]
    fn only_named_methods_carry_a_name() {
        let params = json!({"name": "echo", "uri": "file:///a"});
        assert_eq!(name_of("tools/call", Some(&params)).as_deref(), Some("echo"));
        assert_eq!(name_of("resources/read", Some(&params)).as_deref(), Some("file:///a"));
        assert_eq!(name_of("tools/list", Some(&params)), None);
        assert!(code::is_modern(-32022) && !code::is_modern(-32601));
    }

    #[test]
    fn meta_goes_into_any_params_and_keeps_the_requests_own() {
        let meta =
            meta_object(VERSION, Some(r#"{"sampling":{}}"#), r#"{"name":"c","version":"1"}"#, Some("debug"));
        let parsed: Value = serde_json::from_str(&meta).unwrap();
        assert_eq!(parsed[META_PROTOCOL_VERSION], VERSION);
        assert_eq!(parsed[META_CLIENT_CAPABILITIES], json!({"sampling": {}}));
        assert_eq!(parsed[META_CLIENT_INFO]["name"], "c");
        assert_eq!(parsed[META_LOG_LEVEL], "debug");
        let bare: Value = serde_json::from_str(&meta_object(VERSION, None, "{}", None)).unwrap();
        assert_eq!(bare[META_CLIENT_CAPABILITIES], json!({}));
        assert!(bare.get(META_LOG_LEVEL).is_none());
        for (params, name) in [
            (None, None),
            (Some("{}"), None),
            (Some(r#" { "name" : "x" } "#), Some("x")),
            (Some("[1]"), None),
        ] {
            let out: Value = serde_json::from_str(&with_meta(params, &meta)).unwrap();
            assert_eq!(out["_meta"], parsed, "{params:?}");
            assert_eq!(out.get("name").and_then(Value::as_str), name);
        }
        let out: Value =
            serde_json::from_str(&with_meta(Some(r#"{"name":"t","_meta":{"progressToken":7}}"#), &meta))
                .unwrap();
        assert_eq!(out["_meta"]["progressToken"], 7);
        assert_eq!(out["_meta"][META_PROTOCOL_VERSION], VERSION);
        assert_eq!(out["name"], "t");
    }
}
