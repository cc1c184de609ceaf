//! Liveness, readiness and metrics: what the load balancer and Prometheus see.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;

pub async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#)
}

/// Ready when not draining and the store answers within a second.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let draining = state.draining();
    let store_ok = !draining
        && matches!(tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await, Ok(Ok(())));
    let status = if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({ "ready": store_ok, "draining": draining }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.set_live_children(state.manager.live_children());
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}
