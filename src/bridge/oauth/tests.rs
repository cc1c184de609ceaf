//! The OAuth client against an in-process token endpoint (axum on loopback):
//! silent refresh before expiry, refresh on a 401, and a refused refresh.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use axum::{Form, Json, Router};

use super::*;

#[derive(Clone, Default)]
struct TokenServer {
    /// Every form received.
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// Refresh tokens the server accepts.
    accept: Arc<Mutex<Vec<String>>>,
}

async fn token(
    AxumState(server): AxumState<TokenServer>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<serde_json::Value>) {
    server.seen.lock().unwrap().push(form.clone());
    let given = form.get("refresh_token").cloned().unwrap_or_default();
    let ok = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && server.accept.lock().unwrap().contains(&given);
    if !ok {
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "invalid_grant"})));
    }
    let n = server.seen.lock().unwrap().len();
    let rotated = format!("refresh-{n}");
    server.accept.lock().unwrap().push(rotated.clone());
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "access_token": format!("access-{n}"), "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": rotated,
        })),
    )
}

async fn start_token_server() -> (String, TokenServer) {
    let server = TokenServer::default();
    let app = Router::new().route("/token", post(token)).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), server)
}

fn record(token_endpoint: &str, expires_at: u64) -> TokenRecord {
    TokenRecord {
        issuer: "http://as.invalid".into(),
        token_endpoint: token_endpoint.to_owned(),
        resource: "http://gw.invalid/mcp".into(),
        client: ClientInfo {
            client_id: "client-1".into(),
            client_secret: None,
            auth_method: AuthMethod::None,
            redirect_uri: None,
            kind: "dynamic".into(),
        },
        access_token: Some(Secret::new("access-old")),
        refresh_token: Some(Secret::new("refresh-old")),
        expires_at: Some(expires_at),
        scopes: vec!["mcp:basic".into()],
    }
}

fn oauth_with(dir: &std::path::Path, record: &TokenRecord) -> OAuth {
    let opts = OAuthOptions {
        store: StoreKind::File,
        store_dir: Some(dir.to_owned()),
        interactive: false,
        ..OAuthOptions::default()
    };
    let endpoint = "http://gw.invalid/mcp";
    Store::File(dir.to_owned()).save(endpoint, record);
    OAuth::new(opts, reqwest::Client::new(), endpoint, &|_| None).unwrap()
}

#[tokio::test]
async fn expired_token_is_refreshed_silently_and_stored() {
    let (base, server) = start_token_server().await;
    server.accept.lock().unwrap().push("refresh-old".into());
    let dir = tempfile::tempdir().unwrap();
    let oauth = oauth_with(dir.path(), &record(&format!("{base}/token"), flow::now() + 5));

    oauth.prepare().await;
    let token = oauth.access_token().unwrap();
    assert_eq!(token.expose(), "access-1");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["grant_type"], "refresh_token");
    assert_eq!(seen[0]["refresh_token"], "refresh-old");
    assert_eq!(seen[0]["resource"], "http://gw.invalid/mcp");
    assert_eq!(seen[0]["client_id"], "client-1");
    // stored: the rotated refresh token and the new expiry
    let stored = Store::File(dir.path().to_owned()).load("http://gw.invalid/mcp").unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "refresh-1");
    assert!(stored.expires_at.unwrap() > flow::now() + 3000);
    // a fresh token is not refreshed again
    oauth.prepare().await;
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    let opts = OAuthOptions {
        store: StoreKind::File,
        store_dir: Some(dir.path().to_owned()),
        ..OAuthOptions::default()
    };
    assert!(matches!(
        stored_auth(&opts, "http://gw.invalid"),
        StoredAuth::Valid { refreshable: true, until: Some(_), .. }
    ));
}

#[tokio::test]
async fn a_401_refreshes_once_then_needs_authorization() {
    let (base, server) = start_token_server().await;
    server.accept.lock().unwrap().push("refresh-old".into());
    let dir = tempfile::tempdir().unwrap();
    let oauth = oauth_with(dir.path(), &record(&format!("{base}/token"), flow::now() + 3600));
    oauth.prepare().await;
    let sent = oauth.access_token();
    assert_eq!(sent.as_ref().unwrap().expose(), "access-old");
    let mut headers = HeaderMap::new();
    headers.insert("www-authenticate", HeaderValue::from_static("Bearer error=\"invalid_token\""));
    assert!(oauth.answer(401, &headers, sent.as_ref()).await.unwrap(), "refreshed: send again");
    let renewed = oauth.access_token().unwrap();
    assert_eq!(renewed.expose(), "access-1");
    // a 401 for the old token after the renewal: just send again with the new one
    assert!(oauth.answer(401, &headers, sent.as_ref()).await.unwrap());
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    // the refreshed token is rejected too: no second refresh; authorizing is not
    // allowed here (non-interactive), so the challenge is an error
    let err = oauth.answer(401, &headers, Some(&renewed)).await.unwrap_err();
    assert!(err.to_string().contains("needs an OAuth authorization"), "{err}");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_refresh_drops_the_tokens() {
    let (base, server) = start_token_server().await; // accepts no refresh token
    let dir = tempfile::tempdir().unwrap();
    let oauth = oauth_with(dir.path(), &record(&format!("{base}/token"), flow::now()));
    oauth.prepare().await;
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    assert!(oauth.access_token().is_none(), "a refused refresh leaves no token to send");
    let stored = Store::File(dir.path().to_owned()).load("http://gw.invalid/mcp").unwrap();
    assert!(stored.access_token.is_none() && stored.refresh_token.is_none());
    assert_eq!(stored.client.client_id, "client-1", "the registration is kept");
    let opts = OAuthOptions {
        store: StoreKind::File,
        store_dir: Some(dir.path().to_owned()),
        ..OAuthOptions::default()
    };
    assert_eq!(
        stored_auth(&opts, "http://gw.invalid/mcp").to_string(),
        format!(
            "access token expired and not refreshable: the next start opens a browser (file in {})",
            dir.path().display()
        )
    );
}

#[test]
fn step_up_union_and_callback_checks() {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(union(&s(&["a", "b"]), &s(&["b", "c", "c"])), s(&["a", "b", "c"]));
    let mut metadata = legacy_endpoints("http://as.example/");
    assert_eq!(metadata.token_endpoint, "http://as.example/token");
    let params = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>()
    };
    assert!(check_callback(&params(&[("state", "s"), ("code", "c")]), "s", &metadata).is_ok());
    assert!(check_callback(&params(&[("state", "x"), ("code", "c")]), "s", &metadata).is_err());
    assert!(check_callback(&params(&[("state", "s"), ("error", "access_denied")]), "s", &metadata).is_err());
    // iss: compared exactly when present; required when advertised
    assert!(check_callback(&params(&[("state", "s"), ("iss", "http://evil")]), "s", &metadata).is_err());
    metadata.authorization_response_iss_parameter_supported = Some(true);
    assert!(check_callback(&params(&[("state", "s"), ("code", "c")]), "s", &metadata).is_err());
    assert!(check_callback(&params(&[("state", "s"), ("iss", "http://as.example")]), "s", &metadata).is_ok());
    assert!(
        check_callback(&params(&[("state", "s"), ("iss", "http://as.example/")]), "s", &metadata).is_err()
    );
}
