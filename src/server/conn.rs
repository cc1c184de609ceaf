//! The accept loop and the life of each client connection: HTTP/1.1 over hyper, with the
//! limits of `http.*` in the config.
//!
//! - **Connection cap**: a slot (`http.max_connections` in all) is taken *before* `accept`,
//!   so at the cap new connections wait in the kernel's listen backlog. After
//!   [`QUEUE_WAIT`] still at the cap, whatever waits there is accepted and closed at once (a
//!   proxy retries another worker) rather than left hanging.
//! - **Header-read timeout**: a request's headers must arrive within
//!   `http.header_read_timeout_secs`, counted from the accept for a connection's first
//!   request and from the first byte for later ones. A slowloris client is closed then.
//! - **Idle timeout**: a keep-alive connection with no request in flight is closed after
//!   `http.idle_timeout_secs` without a new one. A request in flight (a long tool call, an
//!   SSE stream) keeps its connection: the clock runs only between requests.
//! - **Accept errors** (out of file descriptors, mostly) back off from 10 ms doubling to 1 s
//!   and are logged at most every [`LOG_EVERY`]; the loop never spins.
//! - **Shutdown**: when `stop` fires the listener closes, idle connections close, and the
//!   others finish their request first; the caller bounds that wait.
//!
//! hyper's own header-read timer is not used: it also runs between requests, which would
//! make the idle timeout never longer than the header-read timeout.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use futures_util::FutureExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpConfig;
use crate::telemetry::Metrics;
use crate::telemetry::events::{ConnectionEvent, Emit};

/// How long a connection waits in the listen backlog while the worker is at its cap.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// Most queued connections closed in one go at the cap (then the wait starts again).
const MAX_REFUSED_AT_ONCE: u64 = 1024;

/// Shortest and longest pause after a failed `accept`.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Refusals at the cap and accept failures are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` fires, then closes the listener and waits for the
/// open connections to end (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    let tracker = TaskTracker::new();
    let mut backoff = BACKOFF_MIN;
    let mut refusals = Every::default();
    let mut failures = Every::default();
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = slot(&slots, &listener, &metrics, &mut refusals) => permit,
        };
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = BACKOFF_MIN;
                let connection =
                    connection(stream, app.clone(), limits.clone(), metrics.clone(), stop.clone(), permit);
                tracker.spawn(connection);
            }
            // The client gave up before it was accepted: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                ConnectionEvent::AcceptFailed.emit(&metrics);
                if let Some(suppressed) = failures.due() {
                    tracing::warn!(
                        error = %e,
                        pause_ms = backoff.as_secs_f64() * 1e3,
                        suppressed,
                        "accept failed; backing off (out of file descriptors? see http.max_connections and ulimit -n)"
                    );
                }
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// A connection slot: at once if one is free; else after at most [`QUEUE_WAIT`], closing
/// the connections queued meanwhile each time the wait runs out.
async fn slot(
    slots: &Arc<Semaphore>,
    listener: &TcpListener,
    metrics: &Metrics,
    log: &mut Every,
) -> OwnedSemaphorePermit {
    loop {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return permit;
        }
        match tokio::time::timeout(QUEUE_WAIT, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => return permit,
            // Closed (never happens: the semaphore is never closed); wait rather than spin.
            Ok(Err(_)) => tokio::time::sleep(QUEUE_WAIT).await,
            Err(_) => {}
        }
        let mut refused = 0u64;
        while refused < MAX_REFUSED_AT_ONCE {
            match listener.accept().now_or_never() {
                Some(Ok((stream, _))) => {
                    drop(stream);
                    refused += 1;
                    ConnectionEvent::OverLimit.emit(metrics);
                }
                _ => break,
            }
        }
        if refused > 0
            && let Some(suppressed) = log.due()
        {
            tracing::warn!(
                refused,
                suppressed,
                "at http.max_connections: closed connections that waited in the listen backlog"
            );
        }
    }
}

/// Errors of one connection that was never really there (the peer reset it while it waited
/// in the backlog): they say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One client connection, from accept to close.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Arc<HttpConfig>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    metrics.connections(1);
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked { stream, activity: activity.clone() });
    let app = TowerToHyperService::new(app);
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::begin(activity.clone());
            let call = hyper::service::Service::call(&app, request);
            async move {
                let response = call.await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(Guarded { body, _in_flight: in_flight })))
            }
        })
    };
    let conn =
        hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    let mut next_check = tokio::time::Instant::now() + limits.header_read_timeout.min(limits.idle_timeout);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(next_check) => match activity.check(&limits) {
                Ok(wait) => next_check = tokio::time::Instant::now() + wait,
                Err(event) => {
                    // Nothing is in flight: closing loses no request.
                    event.emit(&metrics);
                    break;
                }
            },
        }
    }
    metrics.connections(-1);
}

/// "Never" in the millisecond fields of [`Activity`].
const NEVER: u64 = u64::MAX;

/// What a connection is doing, shared by its socket (reads), its service (requests) and
/// its watchdog. Times are milliseconds since the accept.
struct Activity {
    accepted: Instant,
    /// Requests whose response is not finished (or dropped).
    in_flight: AtomicUsize,
    /// When the last response finished (the accept, before the first).
    idle_since: AtomicU64,
    /// When the first byte of the next request's headers came, or [`NEVER`]. The first
    /// request's headers are owed from the accept.
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// Bytes came in: between requests, they start the next request's headers.
    fn read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let _ = self.head_since.compare_exchange(NEVER, self.now(), Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// `Ok(wait)`: alive, look again after `wait`; `Err`: over a limit, close it.
    fn check(&self, limits: &HttpConfig) -> Result<Duration, ConnectionEvent> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Ok(limits.header_read_timeout.min(limits.idle_timeout));
        }
        let head = self.head_since.load(Ordering::SeqCst);
        let (since, limit, event) = if head == NEVER {
            (self.idle_since.load(Ordering::SeqCst), limits.idle_timeout, ConnectionEvent::IdleTimeout)
        } else {
            (head, limits.header_read_timeout, ConnectionEvent::HeaderTimeout)
        };
        let elapsed = Duration::from_millis(self.now().saturating_sub(since));
        match limit.checked_sub(elapsed) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(event),
        }
    }
}

/// A request between its headers and the end of its response.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.head_since.store(NEVER, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::SeqCst);
        }
    }
}

/// A response body that holds its request's [`InFlight`] until hyper has written it all
/// (or dropped it: the client went away).
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client socket, noting every read in the connection's [`Activity`].
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A rate limit for log lines: [`Every::due`] says whether to log now, and how many
/// occurrences went unlogged since the last line.
#[derive(Default)]
struct Every {
    last: Option<Instant>,
    suppressed: u64,
}

impl Every {
    fn due(&mut self) -> Option<u64> {
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_ms: u64, idle_ms: u64) -> HttpConfig {
        HttpConfig {
            header_read_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn a_fresh_connection_owes_its_headers_from_the_accept() {
        let activity = Activity::new();
        assert!(activity.check(&limits(60_000, 1)).is_ok(), "the header limit applies, not the idle one");
        assert_eq!(activity.check(&limits(0, 60_000)), Err(ConnectionEvent::HeaderTimeout));
    }

    #[test]
    fn between_requests_the_idle_limit_applies_until_a_byte_comes() {
        let activity = Arc::new(Activity::new());
        drop(InFlight::begin(activity.clone()));
        assert!(
            activity.check(&limits(0, 60_000)).is_ok(),
            "idle, no byte yet: the header limit does not run"
        );
        assert_eq!(activity.check(&limits(60_000, 0)), Err(ConnectionEvent::IdleTimeout));
        activity.read();
        assert_eq!(activity.check(&limits(0, 60_000)), Err(ConnectionEvent::HeaderTimeout));
    }

    #[test]
    fn a_request_in_flight_is_never_timed_out() {
        let activity = Arc::new(Activity::new());
        let in_flight = InFlight::begin(activity.clone());
        activity.read(); // its body
        assert!(activity.check(&limits(0, 0)).is_ok());
        drop(in_flight);
        assert_eq!(activity.check(&limits(60_000, 0)), Err(ConnectionEvent::IdleTimeout));
    }

    #[test]
    fn log_lines_are_rate_limited_and_count_what_they_skipped() {
        let mut every = Every::default();
        assert_eq!(every.due(), Some(0));
        assert_eq!(every.due(), None);
        assert_eq!(every.due(), None);
        every.last = Instant::now().checked_sub(LOG_EVERY);
        assert_eq!(every.due(), Some(2));
    }
}
