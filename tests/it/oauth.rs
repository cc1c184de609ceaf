//! Auth mode `oauth` (issue 15): workers as OAuth 2.1 resource servers, against an
//! authorization server of the test's own on loopback (RFC 8414 metadata and a JWK Set the
//! test rotates), with tokens signed here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::*;

const ACCEPT: &str = "application/json, text/event-stream";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An RS256 or EdDSA signing key with its key id.
enum Key {
    Rsa(String, signature::RsaKeyPair),
    Ed(String, signature::Ed25519KeyPair),
}

impl Key {
    fn rsa(kid: &str) -> Self {
        Self::Rsa(kid.into(), signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    fn ed(kid: &str) -> Self {
        Self::Ed(kid.into(), signature::Ed25519KeyPair::generate().unwrap())
    }

    fn jwk(&self) -> Value {
        match self {
            Self::Rsa(kid, k) => json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                "n": b64(k.public_key().modulus().big_endian_without_leading_zero()),
                "e": b64(k.public_key().exponent().big_endian_without_leading_zero())}),
            Self::Ed(kid, k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let (alg, kid) = match self {
            Self::Rsa(kid, _) => ("RS256", kid),
            Self::Ed(kid, _) => ("EdDSA", kid),
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"});
        let message =
            format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = match self {
            Self::Rsa(_, k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), message.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            Self::Ed(_, k) => k.sign(message.as_bytes()).as_ref().to_vec(),
        };
        format!("{message}.{}", b64(&signature))
    }
}

/// The authorization server: metadata and a key set the test may change, on loopback.
struct Issuer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl Issuer {
    async fn start(keys: &[&Key]) -> Self {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/auth"), "token_endpoint": format!("{url}/token")});
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { axum::Json(metadata) }),
            )
            .route("/jwks", {
                let (jwks, fetches) = (jwks.clone(), fetches.clone());
                get(move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(jwks.lock().unwrap().clone())
                })
            });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let issuer = Self { url, jwks, fetches, _server: server };
        issuer.publish(keys);
        issuer
    }

    fn publish(&self, keys: &[&Key]) {
        *self.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }

    fn claims(&self, audience: &str, sub: &str, scope: &str) -> Value {
        json!({"iss": self.url, "sub": sub, "aud": audience, "exp": now() + 600, "iat": now(),
               "scope": scope, "email": format!("{sub}@example.com"), "client_id": "it"})
    }
}

/// Two workers on one Redis in auth mode `oauth` for `issuer`, serving the token fixture
/// three times: `who` (needs scope `who:use`, gets the `email` claim), `pass` (receives the
/// access token: `pass_access_token`) and `plain` (asks for `{credentials.token}`, which
/// auth mode `oauth` never stores).
fn workers(
    redis: &Redis,
    dir: &std::path::Path,
    issuer: &Issuer,
    audience_port: u16,
) -> (Vec<Worker>, String) {
    let audience = format!("http://127.0.0.1:{audience_port}/mcp");
    let server = |name: &str, env: &str, extra: &str| {
        format!(
            "[servers.{name}]\ncommand = [\"/bin/sh\", \"{}\"]\nenv = {{ API_TOKEN = \"{env}\" }}\n\
             shutdown_grace_secs = 0.5\nwarm_idle_secs = 0\n{extra}\n",
            fixture("token_server.sh")
        )
    };
    let config = format!(
        "[auth]\nmode = \"oauth\"\nissuer = \"{}\"\naudience = \"{audience}\"\nrequired_scopes = [\"mcp\"]\n\
         jwks_refetch_min_secs = 0.2\n\n{}{}{}",
        issuer.url,
        server("who", "{claims.email}", "required_scopes = [\"who:use\"]"),
        server("pass", "{credentials.access_token}", "pass_access_token = true"),
        server("plain", "{credentials.token}", ""),
    );
    let path = write_config(dir, &config);
    let url = redis.url();
    let env = [("SWITCHBOARD_REDIS_URL", url.as_str()), ("SWITCHBOARD_SECRET_KEY", SECRET_KEY)];
    let listen = format!("127.0.0.1:{audience_port}");
    let first = Worker::start(&[env[0], env[1], ("SWITCHBOARD_LISTEN", listen.as_str())], Some(&path));
    let second = Worker::start(&env, Some(&path));
    (vec![first, second], audience)
}

/// POSTs a JSON-RPC message to `/mcp` with `token`; (status, headers, body).
async fn post(
    client: &reqwest::Client,
    worker: &Worker,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = client
        .post(worker.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .body(body.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}})
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

/// The first JSON-RPC message of a JSON or SSE body.
fn message(body: &str) -> Value {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).unwrap();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .find(|m: &Value| m.get("id").is_some())
        .unwrap_or_else(|| panic!("no message in {body}"))
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn text_of(body: &str) -> String {
    message(body)["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_workers_publish_metadata_and_challenge_every_door() {
    let key = Key::rsa("k1");
    let issuer = Issuer::start(&[&key]).await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (workers, audience) = workers(&redis, dir.path(), &issuer, free_port());
    let client = http();
    let metadata_url =
        format!("http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp", workers[0].port);

    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let response = client
            .get(workers[1].url(path))
            .header("origin", "https://inspector.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}: public, whatever the Origin");
        let document: Value = response.json().await.unwrap();
        assert_eq!(document["resource"], audience);
        assert_eq!(document["authorization_servers"], json!([issuer.url]));
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
        assert_eq!(document["scopes_supported"], json!(["mcp", "who:use"]));
    }

    // No token: 401 naming the metadata, on /mcp and on the JSON routes.
    let (status, headers, body) = post(&client, &workers[0], None, None, initialize()).await;
    assert_eq!(status, 401, "{body}");
    let value = challenge(&headers);
    assert!(value.starts_with(&format!("Bearer resource_metadata=\"{metadata_url}\"")), "{value}");
    assert!(value.contains("scope=\"mcp\""), "{value}");
    for (method, path) in [("GET", "/tools"), ("POST", "/init"), ("GET", "/session")] {
        let request = client
            .request(method.parse().unwrap(), workers[1].url(path))
            .header("content-type", "application/json");
        let response = request.body("{}").send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert!(challenge(response.headers()).contains("resource_metadata="), "{method} {path}");
    }

    // Refused tokens: 401 invalid_token with a description.
    let other_audience = key.sign(&issuer.claims("https://elsewhere.example/mcp", "alice", "mcp"));
    let mut expired = issuer.claims(&audience, "alice", "mcp");
    expired["exp"] = json!(now() - 600);
    let stranger = Key::ed("stranger").sign(&issuer.claims(&audience, "alice", "mcp"));
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(issuer.claims(&audience, "alice", "mcp").to_string().as_bytes())
    );
    for (token, why) in
        [(other_audience, "aud"), (key.sign(&expired), "expired"), (stranger, "key"), (none, "none")]
    {
        let (status, headers, body) = post(&client, &workers[0], Some(&token), None, initialize()).await;
        assert_eq!(status, 401, "{why}: {body}");
        let value = challenge(&headers);
        assert!(
            value.contains("error=\"invalid_token\"") && value.contains("error_description=\""),
            "{value}"
        );
        assert!(value.contains(why), "{why}: {value}");
        assert_eq!(message(&body)["error"]["code"], -32000);
    }
    // Missing the global scope: 403 insufficient_scope naming it.
    let unscoped = key.sign(&issuer.claims(&audience, "alice", "profile"));
    let (status, headers, _) = post(&client, &workers[0], Some(&unscoped), None, initialize()).await;
    assert_eq!(status, 403);
    let value = challenge(&headers);
    assert!(value.contains("error=\"insufficient_scope\"") && value.contains("scope=\"mcp\""), "{value}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_sessions_bind_to_the_principal_and_keep_the_token_from_servers() {
    let key = Key::rsa("k1");
    let issuer = Issuer::start(&[&key]).await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (workers, audience) = workers(&redis, dir.path(), &issuer, free_port());
    let client = http();

    let alice = key.sign(&issuer.claims(&audience, "alice", "mcp"));
    let (status, headers, body) = post(&client, &workers[0], Some(&alice), None, initialize()).await;
    assert_eq!(status, 200, "{body}");
    let session = headers.get("mcp-session-id").unwrap().to_str().unwrap().to_string();

    // Without `who:use` the `who` tools are not listed, and calling one is a 403 to step up from.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, body) = post(&client, &workers[1], Some(&alice), Some(&session), list.clone()).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<String> = message(&body)["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["pass.whoami", "plain.whoami"]);
    let (status, headers, body) =
        post(&client, &workers[1], Some(&alice), Some(&session), call(3, "who.whoami")).await;
    assert_eq!(status, 403, "{body}");
    let value = challenge(&headers);
    assert!(value.contains("error=\"insufficient_scope\"") && value.contains("scope=\"who:use\""), "{value}");

    // A new token for the same principal (a refresh, a step-up) uses the same session.
    let stepped = key.sign(&issuer.claims(&audience, "alice", "mcp who:use"));
    let (status, _, body) =
        post(&client, &workers[1], Some(&stepped), Some(&session), call(4, "who.whoami")).await;
    assert_eq!(status, 200, "{body}");
    assert!(text_of(&body).starts_with("token=alice@example.com "), "claims map into env: {body}");
    // The legacy door: the same rules.
    let response = client
        .post(workers[0].url("/call-tool"))
        .header("mcp-session-id", &session)
        .bearer_auth(&alice)
        .json(&json!({"tool": "who.whoami", "arguments": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(challenge(response.headers()).contains("insufficient_scope"));

    // The confused-deputy rule: only the server that opted in receives the access token.
    let (_, _, body) =
        post(&client, &workers[0], Some(&stepped), Some(&session), call(5, "pass.whoami")).await;
    assert!(text_of(&body).starts_with(&format!("token={stepped} ")), "{body}");
    let (_, _, body) =
        post(&client, &workers[0], Some(&stepped), Some(&session), call(6, "plain.whoami")).await;
    assert!(text_of(&body).starts_with("token= "), "no access token for `plain`: {body}");
    let stored = redis.cli(&["HGETALL", &format!("switchboard:{{{session}}}")]).unwrap_or_default();
    assert!(!stored.contains(&alice) && !stored.contains(&stepped), "no token in the store");

    // Another principal, or no token, finds nothing: 404 and 401.
    let bob = key.sign(&issuer.claims(&audience, "bob", "mcp who:use"));
    let (status, _, _) = post(&client, &workers[1], Some(&bob), Some(&session), call(7, "pass.whoami")).await;
    assert_eq!(status, 404);
    let (status, headers, _) = post(&client, &workers[1], None, Some(&session), call(8, "pass.whoami")).await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("resource_metadata="));
    // An expired token of the right principal is refused on an existing session too.
    let mut old = issuer.claims(&audience, "alice", "mcp who:use");
    old["exp"] = json!(now() - 3600);
    let (status, headers, _) =
        post(&client, &workers[0], Some(&key.sign(&old)), Some(&session), call(9, "pass.whoami")).await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("expired"));
    // Every worker fetched the keys once.
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_signing_key_is_picked_up_without_a_restart() {
    let (old, new) = (Key::rsa("2026-old"), Key::ed("2026-new"));
    let issuer = Issuer::start(&[&old]).await;
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (workers, audience) = workers(&redis, dir.path(), &issuer, free_port());
    let client = http();
    let (status, _, body) = post(
        &client,
        &workers[0],
        Some(&old.sign(&issuer.claims(&audience, "carol", "mcp"))),
        None,
        initialize(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pid = workers[0].pid();

    // The issuer rotates: the new key alone is published, and tokens name it.
    issuer.publish(&[&new]);
    let token = new.sign(&issuer.claims(&audience, "carol", "mcp"));
    let accepted = eventually_async(Duration::from_secs(10), || {
        let (client, token) = (client.clone(), token.clone());
        let worker = &workers[0];
        async move { post(&client, worker, Some(&token), None, initialize()).await.0 == 200 }
    })
    .await;
    assert!(accepted, "the new key is fetched on first sight of its kid");
    assert_eq!(workers[0].pid(), pid, "same process");
    // And the retired key's tokens stop working once the new set is held.
    let (status, _, _) = post(
        &client,
        &workers[0],
        Some(&old.sign(&issuer.claims(&audience, "carol", "mcp"))),
        None,
        initialize(),
    )
    .await;
    assert_eq!(status, 401);
}
