//! Inbound HTTP: the only module that imports axum. [`router`] builds the
//! routes over an [`AppState`]; [`run`] serves them on a listener it is given
//! until a shutdown future resolves, then drains (bounded) and kills children.
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

use crate::auth::Authenticator;
use crate::config::Config;
use crate::crypto::Sealer;
use crate::store::{Keys, SessionStore};
use crate::telemetry::Metrics;
use crate::upstream::{McpManager, ReplyRouter};

mod admin;
pub mod calls;
pub mod error;
mod mcp;
mod routes;

pub use error::ApiError;
pub use mcp::{Inflight, spawn_dispatcher};

/// Everything a request handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of the state, built once at start-up.
pub struct Shared {
    pub config: Config,
    pub store: Arc<dyn SessionStore>,
    pub sealer: Sealer,
    pub auth: Authenticator,
    pub manager: Arc<McpManager>,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: readiness turns false while in-flight requests finish.
    pub draining: AtomicBool,
    /// Pending server-to-client requests of this worker's children (`/mcp`).
    pub relay: Arc<ReplyRouter>,
    /// `/mcp` requests running here, for `notifications/cancelled` from any worker.
    pub inflight: mcp::Inflight,
    /// Names of store keys and channels.
    pub keys: Keys,
    /// Cache policies, filters and size caps per tool.
    pub policies: calls::Policies,
    /// Tool lists of the servers, as last fetched.
    pub catalog: calls::Catalog,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
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
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such route") })
        // Bodies are read by the handlers with their own bound (see routes::read_body).
        .layer(DefaultBodyLimit::disable())
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
    let status = response.status().as_u16();
    state.metrics.request(&route, status, started.elapsed());
    span.in_scope(|| {
        tracing::debug!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request done")
    });
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
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let begun = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let state = state.clone();
        let begun = begun.clone();
        async move {
            shutdown.await;
            state.draining.store(true, Ordering::SeqCst);
            // Warm children serve no one during a drain: they go first.
            state.manager.drain();
            tracing::info!("shutting down: draining in-flight requests");
            begun.notify_one();
        }
    };
    let serve = axum::serve(listener, app).with_graceful_shutdown(signal).into_future();
    let drain = state.config.drain_timeout;
    tokio::select! {
        result = serve => result?,
        () = async { begun.notified().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(secs = drain.as_secs_f64(), "drain timeout reached; abandoning the remaining requests");
        }
    }
    if !state.manager.shutdown(Duration::from_secs(10)).await {
        tracing::warn!("some MCP server processes were not reaped within 10 s");
    }
    tracing::info!("stopped");
    Ok(())
}
