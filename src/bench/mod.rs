//! `switchboard bench`: a closed-loop load generator for a running
//! deployment (a worker, a fleet behind a load balancer, or a peer gateway).
//!
//! A fixed pool of `concurrency` tasks shares one keep-alive HTTP client.
//! Each task first opens, untimed, what its scenario needs (a worker session,
//! an MCP session, a warm cache entry), then sends one request after another
//! until the duration ends or the request budget is spent. Latencies of
//! successful requests go into an HDR histogram with microsecond resolution;
//! failures are counted by kind. Requests still in flight at the deadline are
//! abandoned and reported as `cancelled`, so a run never outlives its
//! duration by more than the setup and a bounded cleanup.
//!
//! Layout: `options` (what to run, CLI parsers), `scenario` (the requests of
//! each scenario over the public HTTP contract), `reply` (pure JSON-RPC reply
//! matching; SSE is decoded by [`crate::protocol::sse`]), `report` (tallies, percentiles, JSON and table).
//!
//! Must not: start or stop servers, read the environment, or depend on the
//! worker's own modules: it measures what any client would see.

mod options;
mod reply;
mod report;
mod scenario;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use options::{BenchOptions, Scenario, parse_arguments, parse_duration};
pub use report::BenchReport;

use report::{Outcome, Tally};
use scenario::{Target, TaskState};

/// A request that takes longer than this counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that takes longer than this to open counts as `connect`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections older than this are not reused: Node's HTTP
/// server (supergateway) closes idle keep-alive connections after 5 s, and
/// a POST sent on a connection the server is closing fails without a retry.
/// Setup of many stateless sessions can leave connections idle that long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Why a bench run could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options make no sense (e.g. concurrency 0).
    #[error("invalid bench options: {0}")]
    InvalidOptions(String),
    /// The URL is not an absolute http(s) URL.
    #[error("invalid URL {0}")]
    InvalidUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A task could not open what its scenario needs before timing started;
    /// the target is down, refuses the credentials, or speaks another protocol.
    #[error("setup failed for task {task} at {step}: {detail}")]
    Setup {
        /// Index of the task (0-based).
        task: usize,
        /// Which request failed (`init`, `initialize`, …).
        step: &'static str,
        /// What went wrong, with a snippet of the answer.
        detail: String,
    },
    /// The latency histogram could not be created or merged.
    #[error("latency histogram: {0}")]
    Histogram(String),
    /// A load task panicked or was cancelled.
    #[error("load task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Runs one bench: setup, the timed closed loop, cleanup; returns the report.
pub async fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.concurrency == 0 {
        return Err(BenchError::InvalidOptions("concurrency must be at least 1".into()));
    }
    if opts.duration.is_zero() {
        return Err(BenchError::InvalidOptions("duration must be above zero".into()));
    }
    if opts.requests == Some(0) {
        return Err(BenchError::InvalidOptions("requests must be at least 1".into()));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(opts.concurrency)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .map_err(BenchError::Client)?;
    let target = Arc::new(Target::new(opts)?);

    let states = open_all(&client, &target, opts.concurrency).await?;

    let counters = Arc::new(LiveCounters::default());
    let progress = opts.progress.then(|| start_progress(opts, Arc::clone(&counters)));
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut loops = JoinSet::new();
    for state in states {
        loops.spawn(load_loop(
            client.clone(),
            Arc::clone(&target),
            state,
            deadline,
            opts.requests,
            Arc::clone(&counters),
        ));
    }
    let mut total = Tally::new().map_err(|e| BenchError::Histogram(e.to_string()))?;
    let mut finished = Vec::with_capacity(opts.concurrency);
    let mut failure = None;
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(Ok((tally, state))) => {
                if let Err(e) = total.merge(&tally) {
                    failure.get_or_insert(BenchError::Histogram(e.to_string()));
                }
                finished.push(state);
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(BenchError::Task(e));
            }
        }
    }
    let elapsed = started.elapsed().min(opts.duration);
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    close_all(&client, &target, finished).await;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(BenchReport::from_tally(
        opts.scenario,
        target.timed_url().to_owned(),
        opts.concurrency,
        elapsed,
        &total,
    ))
}

/// Opens every task's state concurrently; the first failure aborts the run.
async fn open_all(
    client: &reqwest::Client,
    target: &Arc<Target>,
    concurrency: usize,
) -> Result<Vec<TaskState>, BenchError> {
    let mut opening = JoinSet::new();
    for task in 0..concurrency {
        let client = client.clone();
        let target = Arc::clone(target);
        opening.spawn(async move { target.open(&client, task).await });
    }
    let mut states = Vec::with_capacity(concurrency);
    let mut failure = None;
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(Ok(state)) => states.push(state),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(BenchError::Task(e));
            }
        }
    }
    match failure {
        None => Ok(states),
        Some(e) => {
            close_all(client, target, states).await;
            Err(e)
        }
    }
}

/// Ends the sessions the tasks opened, concurrently and best-effort.
async fn close_all(client: &reqwest::Client, target: &Arc<Target>, states: Vec<TaskState>) {
    let mut closing = JoinSet::new();
    for state in states {
        let client = client.clone();
        let target = Arc::clone(target);
        closing.spawn(async move { target.close(&client, state).await });
    }
    while closing.join_next().await.is_some() {}
}

/// Counters the progress bar reads while the loops run.
#[derive(Debug, Default)]
struct LiveCounters {
    /// Requests handed out so far (the `--requests` budget).
    issued: AtomicU64,
    /// Successful requests so far.
    ok: AtomicU64,
    /// Failed requests so far.
    errors: AtomicU64,
}

/// One closed-loop task: at most one request in flight, until the deadline
/// or the shared request budget ends it.
async fn load_loop(
    client: reqwest::Client,
    target: Arc<Target>,
    mut state: TaskState,
    deadline: Instant,
    budget: Option<u64>,
    counters: Arc<LiveCounters>,
) -> Result<(Tally, TaskState), BenchError> {
    let mut tally = Tally::new().map_err(|e| BenchError::Histogram(e.to_string()))?;
    while Instant::now() < deadline {
        if budget.is_some_and(|limit| counters.issued.fetch_add(1, Ordering::Relaxed) >= limit) {
            break;
        }
        match tokio::time::timeout_at(deadline, target.call(&client, &mut state)).await {
            Ok((outcome, latency)) => {
                let counter = match outcome {
                    Outcome::Ok { .. } => &counters.ok,
                    Outcome::Failed(_) => &counters.errors,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tally.record(outcome, latency);
            }
            Err(_) => {
                tally.record_cancelled();
                break;
            }
        }
    }
    Ok((tally, state))
}

/// Starts the progress bar and the task that redraws it.
fn start_progress(
    opts: &BenchOptions,
    counters: Arc<LiveCounters>,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let by_requests = opts.requests;
    let duration_ms = u64::try_from(opts.duration.as_millis()).unwrap_or(u64::MAX);
    let bar = ProgressBar::new(by_requests.unwrap_or(duration_ms));
    let template = if by_requests.is_some() {
        "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} requests  {msg}"
    } else {
        "{spinner} {elapsed_precise} [{bar:30}] {percent}%  {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    let ticking = bar.clone();
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROGRESS_TICK);
        loop {
            interval.tick().await;
            let ok = counters.ok.load(Ordering::Relaxed);
            let errors = counters.errors.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
            let position = match by_requests {
                Some(_) => ok + errors,
                None => u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            ticking.set_position(position);
            ticking.set_message(format!("ok {ok}  errors {errors}  {rate:.0} calls/s"));
        }
    });
    (bar, ticker)
}
