//! Counting outcomes and turning them into the final report: latency
//! histogram (microseconds), errors by kind, the JSON object and the table.
//! Must not: do I/O; the caller prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use super::options::Scenario;

/// Highest latency the histogram resolves (one hour, in microseconds);
/// larger values are clamped, which the request timeout makes unreachable.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How one timed request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A good answer; `cached` when the worker said it came from the result cache.
    Ok { cached: bool },
    /// A failure, counted by kind and kept out of the latency histogram.
    Failed(ErrorKind),
}

/// Why a request failed, as reported under `errors_by_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// A non-success HTTP status (`http_503`).
    Http(u16),
    /// The TCP connection could not be made.
    Connect,
    /// The request hit the client's per-request timeout.
    Timeout,
    /// A JSON-RPC `error` instead of a result.
    RpcError,
    /// A tool result with `isError: true`.
    ToolError,
    /// The body could not be read or is not the JSON the contract promises.
    Body,
    /// An SSE stream or JSON body ended without the response to our id.
    NoReply,
    /// Any other transport failure (connection reset, protocol error).
    Request,
}

impl ErrorKind {
    /// The key under `errors_by_kind`.
    pub(crate) fn key(self) -> String {
        match self {
            ErrorKind::Http(code) => format!("http_{code}"),
            ErrorKind::Connect => "connect".to_owned(),
            ErrorKind::Timeout => "timeout".to_owned(),
            ErrorKind::RpcError => "rpc_error".to_owned(),
            ErrorKind::ToolError => "tool_error".to_owned(),
            ErrorKind::Body => "bad_body".to_owned(),
            ErrorKind::NoReply => "no_reply".to_owned(),
            ErrorKind::Request => "request".to_owned(),
        }
    }

    /// Classifies a reqwest failure.
    pub(crate) fn from_reqwest(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_connect() {
            ErrorKind::Connect
        } else if err.is_body() || err.is_decode() {
            ErrorKind::Body
        } else {
            ErrorKind::Request
        }
    }
}

/// What one task counted; tallies of all tasks are merged at the end.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Latencies of successful requests, in microseconds.
    latency_us: Histogram<u64>,
    /// Successful requests.
    ok: u64,
    /// Successful requests answered from the result cache.
    cached: u64,
    /// Failures by kind key.
    errors: BTreeMap<String, u64>,
    /// Requests abandoned because the duration ended while they were in flight.
    cancelled: u64,
}

impl Tally {
    /// An empty tally.
    pub(crate) fn new() -> Result<Self, hdrhistogram::CreationError> {
        Ok(Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
            ok: 0,
            cached: 0,
            errors: BTreeMap::new(),
            cancelled: 0,
        })
    }

    /// Counts one finished request.
    pub(crate) fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok { cached } => {
                self.ok += 1;
                self.cached += u64::from(cached);
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(micros.max(1));
            }
            Outcome::Failed(kind) => *self.errors.entry(kind.key()).or_default() += 1,
        }
    }

    /// Counts one request abandoned at the deadline.
    pub(crate) fn record_cancelled(&mut self) {
        self.cancelled += 1;
    }

    /// Adds another task's counts into this one.
    pub(crate) fn merge(&mut self, other: &Tally) -> Result<(), hdrhistogram::AdditionError> {
        self.latency_us.add(&other.latency_us)?;
        self.ok += other.ok;
        self.cached += other.cached;
        self.cancelled += other.cancelled;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        Ok(())
    }
}

/// The result of a bench run. Latencies are of successful requests only;
/// `calls_per_sec` is successful requests over the timed phase.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Which request was repeated.
    pub scenario: Scenario,
    /// The URL the requests went to.
    pub url: String,
    /// Number of closed-loop tasks.
    pub concurrency: usize,
    /// Length of the timed phase, in seconds.
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub calls_per_sec: f64,
    /// Latency percentiles and extremes of successful requests, in milliseconds.
    pub min_ms: f64,
    /// Mean latency, in milliseconds.
    pub mean_ms: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, in milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
    /// Highest latency seen, in milliseconds.
    pub max_ms: f64,
    /// Successful requests.
    pub ok: u64,
    /// Successful requests the worker answered from its result cache.
    pub cached: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by kind: `http_<status>`, `connect`, `timeout`,
    /// `rpc_error`, `tool_error`, `bad_body`, `no_reply`, `request`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests still in flight when the duration ended (neither ok nor errors).
    pub cancelled: u64,
}

impl BenchReport {
    /// Builds the report from the merged tally and the timed phase's length.
    pub(crate) fn from_tally(
        scenario: Scenario,
        url: String,
        concurrency: usize,
        elapsed: Duration,
        tally: &Tally,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        let h = &tally.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let (min_ms, mean_ms, p50_ms, p90_ms, p99_ms, max_ms) = if h.is_empty() {
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        } else {
            (
                ms(h.min()),
                h.mean() / 1000.0,
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.90)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
            )
        };
        BenchReport {
            scenario,
            url,
            concurrency,
            elapsed_secs: secs,
            calls_per_sec: if secs > 0.0 { tally.ok as f64 / secs } else { 0.0 },
            min_ms,
            mean_ms,
            p50_ms,
            p90_ms,
            p99_ms,
            max_ms,
            ok: tally.ok,
            cached: tally.cached,
            errors: tally.errors.values().sum(),
            errors_by_kind: tally.errors.clone(),
            cancelled: tally.cancelled,
        }
    }

    /// One JSON object with every figure (the `--json` output).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scenario": self.scenario.as_str(),
            "url": self.url,
            "concurrency": self.concurrency,
            "elapsed_secs": round3(self.elapsed_secs),
            "calls_per_sec": round3(self.calls_per_sec),
            "min_ms": round3(self.min_ms),
            "mean_ms": round3(self.mean_ms),
            "p50_ms": round3(self.p50_ms),
            "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
            "ok": self.ok,
            "cached": self.cached,
            "errors": self.errors,
            "errors_by_kind": self.errors_by_kind,
            "cancelled": self.cancelled,
        })
    }

    /// A human-readable summary: a header line, a markdown table, and the
    /// errors by kind when there were any.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} → {}  concurrency {}  {:.2} s",
            self.scenario, self.url, self.concurrency, self.elapsed_secs
        );
        out.push_str("| calls/s | p50 ms | p90 ms | p99 ms | max ms | ok | errors |\n");
        out.push_str("|--------:|-------:|-------:|-------:|-------:|---:|-------:|\n");
        let _ = writeln!(
            out,
            "| {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
            self.calls_per_sec, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.ok, self.errors
        );
        if !self.errors_by_kind.is_empty() {
            let kinds: Vec<String> =
                self.errors_by_kind.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
            let _ = writeln!(out, "errors by kind: {}", kinds.join(", "));
        }
        if self.cached > 0 {
            let _ = writeln!(out, "answered from cache: {} of {}", self.cached, self.ok);
        }
        if self.cancelled > 0 {
            let _ = writeln!(out, "in flight at the deadline (not counted): {}", self.cancelled);
        }
        out
    }
}

/// Rounds to three decimals (microseconds, for milliseconds) so JSON stays readable.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
