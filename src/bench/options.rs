//! What a bench run is asked to do, and the parsers the CLI uses to build it.
//! Must not: read the environment or the terminal; the caller decides
//! (e.g. `progress` from isatty).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which request the closed loop repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `POST /init` in the loop: session creation cost (and store growth).
    Init,
    /// `POST /call-tool` with `"cache": false` on one session per task: a
    /// fresh MCP server behind every call.
    Call,
    /// `POST /call-tool` without `cache: false`; one untimed call per task
    /// warms the cache first, so the loop measures hits.
    CallCached,
    /// MCP Streamable HTTP `tools/call` on one MCP session per task (or none,
    /// against a stateless server).
    Mcp,
    /// MCP Streamable HTTP `tools/call` in the modern era (2026-07-28): no session, the
    /// protocol version and capabilities in `_meta`, the mirrored headers.
    McpModern,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Init => "init",
            Scenario::Call => "call",
            Scenario::CallCached => "call-cached",
            Scenario::Mcp => "mcp",
            Scenario::McpModern => "mcp-modern",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "init" => Ok(Scenario::Init),
            "call" => Ok(Scenario::Call),
            "call-cached" => Ok(Scenario::CallCached),
            "mcp" => Ok(Scenario::Mcp),
            "mcp-modern" => Ok(Scenario::McpModern),
            other => Err(format!(
                "unknown scenario {other:?} (expected init, call, call-cached, mcp or mcp-modern)"
            )),
        }
    }
}

/// Everything one bench run needs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Base URL of the deployment (`http://127.0.0.1:8080`); for `mcp`, the
    /// endpoint itself if it ends in `/mcp`, else `{url}/mcp`.
    pub url: String,
    /// Which request to repeat.
    pub scenario: Scenario,
    /// Number of tasks in the closed loop, each with at most one request in flight.
    pub concurrency: usize,
    /// Timed phase length; requests still in flight when it ends are not counted.
    pub duration: Duration,
    /// Stop after this many requests in total, if reached before `duration`.
    pub requests: Option<u64>,
    /// Tool to call (`call`, `call-cached`, `mcp`).
    pub tool: String,
    /// Tool arguments, a JSON object sent as is.
    pub arguments: serde_json::Value,
    /// Credential: `/init` `credentials.token`, or the MCP `Authorization: Bearer` value.
    pub token: String,
    /// The caller wants JSON output (kept here so callers pass one value around).
    pub json: bool,
    /// Draw a progress bar on stderr while running.
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            url: "http://127.0.0.1:8080".to_owned(),
            scenario: Scenario::Call,
            concurrency: 1,
            duration: Duration::from_secs(10),
            requests: None,
            tool: "echo".to_owned(),
            arguments: serde_json::json!({ "text": "hello" }),
            token: "demo".to_owned(),
            json: false,
            progress: false,
        }
    }
}

/// Parses a duration such as `10s`, `500ms`, `2m`, `1.5s` or `10` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("invalid duration {text:?} (try 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Parses `--arguments`: a JSON object.
pub fn parse_arguments(text: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("arguments are not JSON: {e}"))?;
    if value.is_object() { Ok(value) } else { Err("arguments must be a JSON object".to_owned()) }
}
