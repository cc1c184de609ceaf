//! Inbound HTTP: the only module that imports axum. [`router`] builds the routes over
//! an [`AppState`]; [`run`] serves them on a listener it is given until a shutdown
//! future resolves, then drains (bounded) and kills children.
//!
//! The handlers are thin adapters: `routes.rs` (the legacy JSON API) and `mcp.rs`
//! (Streamable HTTP) parse a request, call the [`Gateway`], and render the answer;
//! `error.rs` is the one mapping from errors to statuses and bodies; `body.rs` reads
//! bounded bodies; `admin.rs` answers health, readiness and metrics. Before any route,
//! `guard.rs` checks `Origin`, `Host` and the content type of every request; beneath the
//! routes, `conn.rs` accepts connections and enforces the connection limits.
//!
//! **Invariant:** no session state lives here between requests; everything a
//! request needs is loaded from the store and written back before it answers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEMO_TOKEN};
use crate::gateway::{Gateway, StartError};
use crate::store::SessionStore;
use crate::telemetry::Metrics;
use crate::telemetry::events::{Emit, RequestCompleted};

mod admin;
mod body;
mod conn;
pub mod error;
mod guard;
mod mcp;
mod modern;
mod routes;
mod well_known;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on purpose
mod tests;

pub use crate::protocol::SESSION_HEADER;
pub use error::ApiError;

/// Longest wait for every child to be reaped once serving has stopped.
const REAP_BOUND: Duration = Duration::from_secs(10);

/// The token a request presents on either door: `Authorization: Bearer <token>` (an empty
/// one is none).
fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// What every handler may use; cheap to clone. Derefs to the [`Gateway`].
#[derive(Clone)]
pub struct AppState {
    gateway: Arc<Gateway>,
    /// Set on shutdown: readiness turns false while in-flight requests finish.
    draining: Arc<AtomicBool>,
}

impl AppState {
    /// Builds the whole worker from its config and store (see [`Gateway::new`]);
    /// `worker_env` is the worker's environment, for the servers' `inherit_env`.
    pub fn new(
        config: Config,
        store: Arc<dyn SessionStore>,
        metrics: Arc<Metrics>,
        worker_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, StartError> {
        let mut config = config;
        if config.refuses_demo_token() {
            tracing::error!(
                listen = %config.listen,
                "THE DEMO TOKEN `{DEMO_TOKEN}` IS DISABLED: this worker listens beyond loopback and \
                 `{DEMO_TOKEN}` is public, so it is refused. Set real tokens \
                 (SWITCHBOARD_AUTH_STATIC_TOKENS) or SWITCHBOARD_AUTH_MODE=http with SWITCHBOARD_AUTH_URL"
            );
            config.auth.static_tokens.retain(|t| t != DEMO_TOKEN);
        }
        Ok(Self::from_gateway(Gateway::new(config, store, metrics, worker_env)?))
    }

    /// Wraps an assembled gateway.
    pub fn from_gateway(gateway: Gateway) -> Self {
        Self { gateway: Arc::new(gateway), draining: Arc::new(AtomicBool::new(false)) }
    }

    /// Whether the worker is shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

impl std::ops::Deref for AppState {
    type Target = Gateway;
    fn deref(&self) -> &Gateway {
        &self.gateway
    }
}

/// All routes of a worker.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/init", post(routes::init))
        .route("/call-tool", post(routes::call_tool))
        .route("/tools", get(routes::tools))
        .route(
            "/session",
            get(routes::get_session).patch(routes::patch_session).delete(routes::delete_session),
        )
        .route("/mcp", post(mcp::post).get(mcp::get).delete(mcp::delete))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .route(well_known::PREFIX, get(well_known::protected_resource))
        .route(&format!("{}/{{*resource}}", well_known::PREFIX), get(well_known::protected_resource))
        .fallback(|| async { ApiError::no_route() })
        // axum adds the `Allow` header to this answer.
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("") })
        // Bodies are read by the handlers with their own bound (see body::read).
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request by route and status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    // A request id from the load balancer is kept (if sane), else one is made here.
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, String::from);
    let span = tracing::info_span!("request", id = %request_id, %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let event =
        RequestCompleted { route: &route, status: response.status().as_u16(), elapsed: started.elapsed() };
    span.in_scope(|| event.emit(&state.metrics));
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves until `shutdown` resolves, then: readiness false, stop accepting, let in-flight
/// requests finish within the drain timeout, kill and reap every child, return.
///
/// Starts what a worker runs beside its requests: the dispatcher of answers and
/// cancellations published by other workers, and the warm pools of `prespawn` servers.
/// Connections are served with the limits of `http.*` (see `conn.rs`).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.gateway.spawn_dispatcher();
    state.manager.start_prespawning();
    warn_if_short_of_descriptors(&state.config);
    let app = router(state.clone());
    let stop = CancellationToken::new();
    let signal = {
        let state = state.clone();
        let stop = stop.clone();
        async move {
            shutdown.await;
            state.draining.store(true, Ordering::SeqCst);
            // Warm children serve no one during a drain: they go first.
            state.manager.drain();
            tracing::info!("shutting down: draining in-flight requests");
            stop.cancel();
        }
    };
    let serve = conn::serve(listener, app, state.config.http.clone(), state.metrics.clone(), stop);
    let drain = state.config.drain_timeout;
    tokio::select! {
        () = serve => {}
        () = async { signal.await; tokio::time::sleep(drain).await } => {
            tracing::warn!(secs = drain.as_secs_f64(), "drain timeout reached; abandoning the remaining requests");
        }
    }
    if !state.manager.shutdown(REAP_BOUND).await {
        tracing::warn!("some MCP server processes were not reaped within 10 s");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Descriptors a worker needs besides its client connections: Redis, the listener, logs.
const SPARE_DESCRIPTORS: u64 = 64;

/// Warns once at start when `http.max_connections` plus the children's pipes (three per
/// child) do not fit under the open-file limit: the worker would then run out of
/// descriptors (and back off its accepts) before it reaches its connection cap.
fn warn_if_short_of_descriptors(config: &Config) {
    let Some(limit) = open_file_limit() else { return };
    let connections = u64::try_from(config.http.max_connections).unwrap_or(u64::MAX);
    let children = u64::try_from(config.max_children).unwrap_or(u64::MAX).saturating_mul(3);
    let needed = connections.saturating_add(children).saturating_add(SPARE_DESCRIPTORS);
    if needed > limit {
        tracing::warn!(
            limit,
            needed,
            max_connections = config.http.max_connections,
            max_children = config.max_children,
            "the open-file limit (ulimit -n, LimitNOFILE) is below http.max_connections + 3 × max_children + 64: \
             raise it or lower http.max_connections"
        );
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}
