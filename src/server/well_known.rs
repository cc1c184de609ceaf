//! Protected resource metadata (RFC 9728) in auth mode `oauth`: what an MCP client reads
//! to find the authorization server after a 401, at `/.well-known/oauth-protected-resource`
//! and at the path-suffixed form of the resource (`…/mcp` for `https://gw.example.com/mcp`).
//! Other modes have no such document (404).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, json};
use crate::config::Config;

/// Where the documents live; `guard.rs` lets any `Origin` read them.
pub(super) const PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The metadata's URL for `auth.audience` (RFC 9728 §3.1: the well-known path between the
/// host and the resource's path), as named in every `WWW-Authenticate` challenge.
pub(super) fn metadata_url(config: &Config) -> String {
    let resource = config.auth.audience.as_deref().unwrap_or_default();
    let scheme_end = resource.find("://").map_or(0, |i| i + 3);
    let path_start = resource[scheme_end..].find('/').map_or(resource.len(), |i| scheme_end + i);
    let (origin, path) = resource.split_at(path_start);
    let path = path.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
    format!("{origin}{PREFIX}{path}")
}

/// `GET /.well-known/oauth-protected-resource[/…]`.
pub(super) async fn protected_resource(State(state): State<AppState>) -> Response {
    if !state.auth.is_oauth() {
        return ApiError::no_route().into_response();
    }
    let auth = &state.config.auth;
    let body = serde_json::json!({
        "resource": auth.audience,
        "authorization_servers": [auth.issuer],
        "scopes_supported": state.config.scopes_supported(),
        "bearer_methods_supported": ["header"],
        "resource_name": "switchboard MCP gateway",
    });
    let mut response = json(StatusCode::OK, body.to_string());
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
