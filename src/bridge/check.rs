//! `switchboard bridge check`: does what Claude Desktop will do with the bridge —
//! start it, `initialize`, open a gateway session, list the tools, call nothing —
//! and prints one line per step with what is wrong and how to fix it.
//!
//! The bridge runs in process over in-memory stdio, exactly as a host drives it, so
//! the check exercises the same code paths; before that, one `GET /healthz` tells a
//! stopped gateway, a TLS problem and a wrong URL path apart.
//!
//! **Invariant:** no credential appears in what this prints.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{BridgeOptions, CREDENTIALS_ENV, TOKEN_ENV, Transport};

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, but something is likely to bite later.
    Warn,
    /// Claude Desktop would fail here.
    Fail,
}

/// One printed line.
#[derive(Debug, Clone)]
pub struct Step {
    /// How it went.
    pub verdict: Verdict,
    /// What was checked: `token`, `gateway`, `initialize`, `tools`.
    pub what: &'static str,
    /// What was found and, when something is wrong, how to fix it.
    pub detail: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{mark}  {:<10} {}", self.what, self.detail)
    }
}

/// The whole check: every step, in order. The caller exits non-zero when any failed.
#[derive(Debug, Default)]
pub struct Report {
    /// The steps run (a failed reachability step ends the check).
    pub steps: Vec<Step>,
}

impl Report {
    /// True when no step failed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.verdict != Verdict::Fail)
    }

    fn push(&mut self, verdict: Verdict, what: &'static str, detail: impl Into<String>) {
        self.steps.push(Step { verdict, what, detail: detail.into() });
    }
}

/// Runs the check against `opts.url` with `opts.credentials` (from the environment,
/// as the bridge reads them).
pub async fn run(mut opts: BridgeOptions) -> Report {
    let mut report = Report::default();
    let has_credentials = opts.credentials.as_object().is_some_and(|o| !o.is_empty());
    let oauth_applies = opts.transport == Transport::Mcp && opts.credentials.get("token").is_none();
    if let Some(oauth) = opts.oauth.as_mut().filter(|_| oauth_applies) {
        // The check never opens a browser: it uses (and may refresh) what is stored.
        oauth.interactive = false;
        let stored = super::oauth::stored_auth(oauth, &opts.url);
        let verdict = if matches!(stored, super::oauth::StoredAuth::Valid { .. }) {
            Verdict::Ok
        } else {
            Verdict::Warn
        };
        report.push(verdict, "oauth", stored.to_string());
    } else if has_credentials {
        report.push(Verdict::Ok, "token", format!("credentials found in {TOKEN_ENV}/{CREDENTIALS_ENV}"));
    } else {
        report.push(
            Verdict::Warn,
            "token",
            format!(
                "neither {TOKEN_ENV} nor {CREDENTIALS_ENV} is set: a gateway that requires a token will refuse \
                 the bridge; set {TOKEN_ENV} in the \"env\" block of the entry (`switchboard bridge install` does)"
            ),
        );
    }
    if !probe(&opts, &mut report).await {
        return report;
    }
    drive(opts, has_credentials, &mut report).await;
    report
}

/// `GET {base}/healthz`: tells unreachable, TLS and wrong-path apart. False ends the check.
async fn probe(opts: &BridgeOptions, report: &mut Report) -> bool {
    let url = opts.url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        report.push(Verdict::Fail, "gateway", format!("{url:?} is not an http:// or https:// URL"));
        return false;
    }
    let base = url.strip_suffix("/mcp").unwrap_or(url);
    let health = format!("{base}/healthz");
    let client =
        match reqwest::Client::builder().timeout(opts.request_timeout.min(Duration::from_secs(10))).build() {
            Ok(c) => c,
            Err(e) => {
                report.push(Verdict::Fail, "gateway", format!("cannot set up an HTTP client: {e}"));
                return false;
            }
        };
    let started = Instant::now();
    match client.get(&health).send().await {
        Ok(response) if response.status().is_success() => {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            report.push(Verdict::Ok, "gateway", format!("{base} is reachable (GET /healthz {ms:.0} ms)"));
            true
        }
        Ok(response) if response.status().as_u16() == 404 => {
            report.push(
                Verdict::Fail,
                "gateway",
                format!(
                    "{health} answered 404: the URL path looks wrong; give the gateway's base URL \
                     (e.g. https://switchboard.example.com), without /init or /tools"
                ),
            );
            false
        }
        Ok(response) => {
            let status = response.status();
            report.push(
                Verdict::Warn,
                "gateway",
                format!("{health} answered {status}: the gateway is up but not ready (draining, or its store is down)"),
            );
            true
        }
        Err(e) => {
            report.push(Verdict::Fail, "gateway", describe_transport_error(&e, base));
            false
        }
    }
}

/// One line for a failed connection: TLS, timeout or unreachable, with the fix.
fn describe_transport_error(e: &reqwest::Error, base: &str) -> String {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let _ = write!(chain, "{s}; ");
        source = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let innermost = chain.trim_end_matches("; ").rsplit("; ").next().unwrap_or_default().to_owned();
    if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        format!(
            "TLS handshake with {base} failed ({innermost}): the server does not speak TLS on this port; \
             use http:// if the gateway serves plain HTTP there"
        )
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        format!(
            "TLS error talking to {base} ({innermost}): the certificate is not trusted or the name does not match; \
             use the name on the gateway's certificate, or http:// for a plain-HTTP gateway"
        )
    } else if e.is_timeout() {
        format!(
            "{base} did not answer in time: is a firewall dropping the connection, or the gateway overloaded?"
        )
    } else {
        format!(
            "{base} is unreachable ({innermost}): is the gateway running, and are the host and port right?"
        )
    }
}

/// Starts the bridge in process and sends what Claude Desktop sends.
async fn drive(opts: BridgeOptions, has_credentials: bool, report: &mut Report) {
    let limit = opts.request_timeout + Duration::from_secs(2);
    let transport = opts.transport;
    let (host_w, bridge_r) = tokio::io::duplex(1 << 20);
    let (bridge_w, host_r) = tokio::io::duplex(1 << 20);
    let bridge = tokio::spawn(super::run(opts, bridge_r, bridge_w));
    let mut host = Host { stdin: host_w, stdout: BufReader::new(host_r).lines(), limit };

    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "switchboard-bridge-check", "version": env!("CARGO_PKG_VERSION")}}
    });
    let started = Instant::now();
    match host.exchange(&initialize.to_string(), 1).await {
        Ok(answer) if answer.get("result").is_some() => {
            let version = answer["result"]["protocolVersion"].as_str().unwrap_or("?").to_owned();
            let ms = started.elapsed().as_secs_f64() * 1e3;
            report.push(Verdict::Ok, "initialize", format!("answered in {ms:.1} ms (protocol {version})"));
        }
        Ok(answer) => {
            report.push(Verdict::Fail, "initialize", error_text(&answer, has_credentials));
            bridge.abort();
            return;
        }
        Err(e) => {
            report.push(Verdict::Fail, "initialize", e);
            bridge.abort();
            return;
        }
    }
    let notified = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let _ = host.send(notified).await;

    let what = match transport {
        Transport::Legacy => "tools",
        Transport::Mcp => "tools/list",
    };
    match host.exchange(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#, 2).await {
        Ok(answer) => match answer["result"]["tools"].as_array() {
            Some(tools) => {
                let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).take(8).collect();
                let more = if tools.len() > names.len() { ", …" } else { "" };
                let detail = format!(
                    "session opened; {} tool(s): {}{more}; Claude Desktop will work",
                    tools.len(),
                    names.join(", ")
                );
                let verdict = if tools.is_empty() { Verdict::Warn } else { Verdict::Ok };
                report.push(verdict, what, detail);
            }
            None => report.push(Verdict::Fail, what, error_text(&answer, has_credentials)),
        },
        Err(e) => report.push(Verdict::Fail, what, e),
    }
    drop(host); // EOF: the bridge ends the session and exits
    let _ = tokio::time::timeout(limit, bridge).await;
}

/// The host side of the in-memory stdio.
struct Host {
    stdin: tokio::io::DuplexStream,
    stdout: tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
    limit: Duration,
}

impl Host {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.map_err(|e| e.to_string())
    }

    /// Sends a request and returns the response with `id` (skipping notifications).
    async fn exchange(&mut self, line: &str, id: i64) -> Result<Value, String> {
        self.send(line).await?;
        loop {
            let line = match tokio::time::timeout(self.limit, self.stdout.next_line()).await {
                Err(_) => return Err(format!("no answer within {} s", self.limit.as_secs())),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(None)) => return Err("the bridge stopped".to_owned()),
                Ok(Ok(Some(line))) => line,
            };
            let message: Value = serde_json::from_str(&line).map_err(|e| format!("not JSON ({e})"))?;
            if message.get("id").and_then(Value::as_i64) == Some(id) && message.get("method").is_none() {
                return Ok(message);
            }
        }
    }
}

/// The bridge's own message for a failed answer, with the fix for a refused token.
fn error_text(answer: &Value, has_credentials: bool) -> String {
    let message =
        answer["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| answer.to_string());
    let refused = message.contains("refused the credentials") || message.contains("missing_credentials");
    match (refused, has_credentials) {
        (true, false) => format!("no token: {message}"),
        (true, true) => {
            let stop = if message.ends_with('.') { "" } else { "." };
            format!(
                "the gateway refused the token: {message}{stop} Check {TOKEN_ENV} (or {CREDENTIALS_ENV})."
            )
        }
        _ => message,
    }
}
