//! `switchboard bridge`: the stdio MCP server that Claude Desktop (or any stdio
//! MCP host) launches, translating MCP on stdin/stdout into calls to the
//! switchboard gateway over HTTP.
//!
//! # Layout
//! - [`jsonrpc`]: PURE. Parses host lines into an envelope (ids and params kept as
//!   raw JSON) and builds outgoing lines. No I/O.
//! - [`stdio`]: the one task that owns stdout. Stdin is read with the shared
//!   bounded framer ([`crate::protocol::lines`]).
//! - [`host`]: the dispatcher. Reads host messages, answers `ping`, runs every
//!   other request in its own task (a slow call never blocks `ping`), tracks
//!   in-flight requests for `notifications/cancelled`, drains on EOF. What each
//!   transport does with a message is its gateway client's `GatewayClient`
//!   implementation.
//! - [`session`]: the gateway session both transports share: opened lazily once,
//!   renewed once on a 404.
//! - [`legacy`]: the worker's JSON API (`/init`, `/tools`, `/call-tool`).
//! - [`mcp`]: an MCP Streamable HTTP client for `{url}/mcp` (JSON and SSE
//!   responses decoded by [`crate::protocol::sse`], `retry` + `Last-Event-ID`
//!   resumption, server→client requests); its child module `modern` (file
//!   `modern.rs`) speaks the 2026-07-28 era to a modern gateway (`--protocol`).
//! - [`error`]: [`BridgeError`] (fatal, returned by [`run`]) and the per-call gateway
//!   error that becomes an `isError` tool result or a JSON-RPC error.
//! - [`install`]: `bridge install`, the entry in Claude Desktop's config file (merged,
//!   backed up, token in `env` only).
//! - [`check`]: `bridge check`, the bridge driven in process as Claude Desktop drives
//!   it, one line per step with the fix.
//! - [`oauth`]: the OAuth client of the mcp transport (MCP authorization spec):
//!   discovery, registration, PKCE, browser + loopback redirect, token store,
//!   refresh, step-up. Hooked into [`mcp`] where a 401/403 arrives.
//!
//! # Decisions (see also `README.md` in this folder)
//! - **Legacy transport** answers `initialize` itself (capability `tools` only),
//!   so start-up never touches the network; the gateway session is opened on the
//!   first `tools/list` or `tools/call`.
//! - **MCP transport** relays the host's `initialize` to the gateway so the host
//!   sees the gateway's real capabilities and negotiated version. If the gateway
//!   cannot be reached (or refuses), the bridge answers `initialize` itself
//!   (tools, resources, prompts) and initializes the gateway lazily on the next
//!   request, replaying the host's `initialize` parameters.
//! - Payloads are forwarded as raw JSON. In MCP mode the host's request line is
//!   posted byte for byte; the bridge only rewrites the ids of server→client
//!   requests (so ids of a renewed gateway session never collide).
//! - A 404 for the session (expired, deleted) means the call never ran: the bridge
//!   opens a new session and retries exactly once, silently.
//!
//! **Invariant:** nothing is written to stdout but JSON-RPC messages, one per line;
//! logs go through `tracing` (the binary's subscriber must write to stderr).
//! **Invariant:** credentials never appear in a log line or an error message.

pub mod check;
mod error;
mod host;
pub mod install;
mod jsonrpc;
mod legacy;
mod mcp;
pub mod oauth;
mod session;
mod stdio;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use error::BridgeError;

/// Environment variable holding the credentials as a JSON object.
pub const CREDENTIALS_ENV: &str = "SWITCHBOARD_CREDENTIALS";
/// Environment variable holding a bare token, sent as `{"token": T}`.
pub const TOKEN_ENV: &str = "SWITCHBOARD_TOKEN";

/// Default per-HTTP-call timeout: long enough for a slow tool, short enough that
/// a host never waits forever on a gateway that accepted the connection but hangs.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Which HTTP API of the gateway the bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// The worker's JSON routes: `POST /init`, `GET /tools`, `POST /call-tool`.
    #[default]
    Legacy,
    /// MCP Streamable HTTP (2025-11-25 era) at `{url}/mcp`.
    Mcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Legacy => "legacy",
            Self::Mcp => "mcp",
        })
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "legacy" => Ok(Self::Legacy),
            "mcp" => Ok(Self::Mcp),
            other => Err(format!("unknown transport {other:?} (expected \"legacy\" or \"mcp\")")),
        }
    }
}

/// Which protocol era the `mcp` transport speaks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// A modern `server/discover` first; the legacy `initialize` on any answer but a
    /// discover result or a modern error (-32020/-32021/-32022), as the specification's
    /// dual-era clients do. The era found is kept for the gateway.
    #[default]
    Auto,
    /// 2025-11-25 and before: `initialize`, then a session.
    Legacy,
    /// 2026-07-28: every request stateless, with `_meta` and the mirrored headers.
    Modern,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        })
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "legacy" => Ok(Self::Legacy),
            "modern" => Ok(Self::Modern),
            other => Err(format!("unknown protocol {other:?} (expected \"auto\", \"legacy\" or \"modern\")")),
        }
    }
}

/// Everything the bridge needs; built by the CLI from `--url`, `--transport`
/// and the environment.
#[derive(Clone)]
pub struct BridgeOptions {
    /// Base URL of the gateway (load balancer), e.g. `http://127.0.0.1:8080`.
    /// MCP mode posts to `{url}/mcp` unless the URL already ends in `/mcp`.
    pub url: String,
    /// Which gateway API to speak.
    pub transport: Transport,
    /// The user's credentials, a JSON object. Legacy mode sends it to `/init`;
    /// MCP mode sends its `token` as `Authorization: Bearer`.
    pub credentials: serde_json::Value,
    /// Bound on every HTTP call (and, for SSE, on the silence between two events).
    pub request_timeout: Duration,
    /// The protocol era of the `mcp` transport (`--protocol`).
    pub protocol: Protocol,
    /// OAuth client settings (mcp transport without a static token); `None`: off.
    pub oauth: Option<oauth::OAuthOptions>,
}

impl BridgeOptions {
    /// Options with the default timeout.
    pub fn new(url: impl Into<String>, transport: Transport, credentials: serde_json::Value) -> Self {
        Self {
            url: url.into(),
            transport,
            credentials,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            protocol: Protocol::default(),
            oauth: None,
        }
    }
}

/// Credentials are redacted: only the key names are shown.
impl fmt::Debug for BridgeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> =
            self.credentials.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        f.debug_struct("BridgeOptions")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("credentials", &format_args!("<redacted keys {keys:?}>"))
            .field("request_timeout", &self.request_timeout)
            .field("protocol", &self.protocol)
            .field("oauth", &self.oauth)
            .finish()
    }
}

/// Reads credentials from the environment: `SWITCHBOARD_CREDENTIALS` (a JSON
/// object) or `SWITCHBOARD_TOKEN` (→ `{"token": T}`); never from argv, which every
/// user of the machine can read.
///
/// When both are set, the object wins and the token fills in a missing `token`
/// key. When neither is set the result is `{}` (a gateway without
/// authentication still works; one with authentication answers 401, which the
/// bridge reports with a hint naming these variables). Empty values count as
/// unset. Error messages never contain the values.
pub fn credentials_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<serde_json::Value, BridgeError> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let token = get(TOKEN_ENV);
    let mut object = match get(CREDENTIALS_ENV) {
        Some(text) => {
            match serde_json::from_str::<serde_json::Value>(&text).map_err(BridgeError::CredentialsNotJson)? {
                serde_json::Value::Object(map) => map,
                _ => return Err(BridgeError::CredentialsNotObject),
            }
        }
        None => serde_json::Map::new(),
    };
    if let Some(token) = token {
        object.entry("token").or_insert(serde_json::Value::String(token));
    }
    Ok(serde_json::Value::Object(object))
}

/// Serves MCP on the given stdio halves until stdin EOF, then returns `Ok(())`.
///
/// Does no network I/O before the first message that needs the gateway. On EOF
/// it stops reading, lets in-flight calls finish (each is bounded by
/// `request_timeout`; the whole drain by the same bound), aborts what is left,
/// ends the gateway session best-effort and returns.
pub async fn run(
    opts: BridgeOptions,
    stdin: impl AsyncRead + Unpin + Send + 'static,
    stdout: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<(), BridgeError> {
    host::serve(opts, host::Tuning::default(), stdin, stdout).await
}
