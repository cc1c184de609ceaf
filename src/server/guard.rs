//! What every request passes before its route: `Origin` and `Host` checks against DNS
//! rebinding, and a JSON content type on requests that carry a body.
//!
//! A web page in a browser on the worker's machine can reach a loopback worker, either
//! directly (a cross-site "simple" request: a POST with `text/plain`, no preflight) or by
//! rebinding its own host name to 127.0.0.1. The `Origin` check refuses the first (browsers
//! send `Origin` on every cross-site POST), the `Host` check the second (the rebound name is
//! not a loopback name), and requiring `application/json` turns every POST into a request a
//! browser must preflight, which the worker never approves.
//!
//! The rules are the same on every route; only the shape of the refusal differs: JSON-RPC on
//! `/mcp`, `{"error": …}` elsewhere (both built in `error.rs`).
//!
//! In auth mode `oauth` it also refuses a request for a protected route that presents no
//! bearer token (401), and writes the `WWW-Authenticate: Bearer resource_metadata=…`
//! challenge of every authentication failure (`error::Challenge`), whichever route made it.
//! The protected resource metadata (`/.well-known/oauth-protected-resource…`) is public:
//! any `Origin` may read it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;

use super::AppState;
use super::error::{Challenge, Rejected};
use crate::auth::AuthError;
use crate::gateway::GatewayError;

/// The Streamable HTTP endpoint: its refusals are JSON-RPC, and it checks its own content
/// type (after `Accept` and the protocol version, in the order the specification lists).
const MCP_PATH: &str = "/mcp";

/// The middleware: refuses a request whose `Origin` or `Host` is not allowed, or a POST or
/// PATCH whose body is not declared JSON; passes everything else on.
pub(super) async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let mcp = path == MCP_PATH;
    let public = path.starts_with(super::well_known::PREFIX);
    let refused = check_origin_and_host(&state, request.headers(), public).err().or_else(|| {
        let has_body = matches!(*request.method(), Method::POST | Method::PATCH);
        (!mcp && has_body && !is_json(request.headers())).then_some(Rejected::MediaType)
    });
    let oauth = state.auth.is_oauth();
    let mut response = match refused {
        Some(rejected) if mcp => rejected.respond(&state.metrics, "null"),
        Some(rejected) => rejected.respond_api(&state.metrics),
        None if oauth && PROTECTED.contains(&path) && super::bearer_token(request.headers()).is_none() => {
            let missing = GatewayError::Auth(AuthError::Missing);
            if mcp {
                super::error::rpc_rejection("null", missing)
            } else {
                super::ApiError::from(missing).into_response()
            }
        }
        None => next.run(request).await,
    };
    if oauth && let Some(challenge) = response.extensions_mut().remove::<Challenge>() {
        let value = challenge.header(
            &super::well_known::metadata_url(&state.config),
            &state.config.auth.required_scopes.join(" "),
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// The routes that need a bearer token in auth mode `oauth`.
const PROTECTED: [&str; 5] = [MCP_PATH, "/init", "/call-tool", "/tools", "/session"];

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

/// `host[:port]` → host.
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// `Origin`, when present, must be a loopback origin or one of `http.allowed_origins`; on a
/// loopback listener `Host` must be a loopback name or one of `http.allowed_hosts`.
fn check_origin_and_host(state: &AppState, headers: &HeaderMap, public: bool) -> Result<(), Rejected> {
    if let Some(origin) = headers.get(header::ORIGIN).filter(|_| !public) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        let allowed = is_loopback_host(host_part(authority))
            || state.config.http.allowed_origins.iter().any(|o| o == origin);
        if !allowed {
            return Err(Rejected::Origin);
        }
    }
    if state.config.listen.ip().is_loopback() {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let name = host_part(host);
        if !(is_loopback_host(name) || state.config.http.allowed_hosts.iter().any(|h| h == name)) {
            return Err(Rejected::Host);
        }
    }
    Ok(())
}

/// Whether `Content-Type` is `application/json`, parameters allowed (`; charset=utf-8`).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let value = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}
