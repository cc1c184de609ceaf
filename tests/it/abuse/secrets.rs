//! Abuse findings: secrets. `principal` was an unsalted hash of the token (a dictionary
//! recovers weak tokens from `GET /session`); `check-config` printed server env constants
//! and URL userinfo; the `http` mode's identity and cached results sat in Redis in clear.
//! Now principals are keyed MACs, `check-config` redacts, and Redis holds none of them in
//! clear (cached results sealed with `cache_seal`, on by default with Redis).

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Another valid key than the tests' own.
const OTHER_KEY: &str = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";

/// Every key of `redis` with every value it holds (hash fields included), as text.
fn dump(redis: &Redis) -> String {
    let mut all = String::new();
    for key in redis.keys() {
        let kind = redis.cli(&["TYPE", &key]).unwrap_or_default();
        let value = match kind.trim() {
            "hash" => redis.cli(&["HGETALL", &key]),
            "string" => redis.cli(&["GET", &key]),
            "list" => redis.cli(&["LRANGE", &key, "0", "-1"]),
            "set" => redis.cli(&["SMEMBERS", &key]),
            "zset" => redis.cli(&["ZRANGE", &key, "0", "-1"]),
            other => Ok(format!("<{other}>")),
        };
        all.push_str(&format!("{key}\n{}\n", value.unwrap_or_default()));
    }
    all
}

/// An `http` credentials service on loopback that accepts anything and answers `identity`.
async fn credentials_service(identity: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/check", axum::routing::post(move || async move { axum::Json(identity.clone()) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A config file: the demo server, `echo` cached.
fn echo_cached(dir: &std::path::Path) -> std::path::PathBuf {
    let toml = format!(
        "[servers.default]\ncommand = [\"{}\", \"demo-server\"]\nenv = {{ DEMO_TOKEN = \"{{credentials.token}}\" }}\n\
         [servers.default.tools.echo]\ncache = \"always\"\n",
        bin()
    );
    write_config(dir, &toml)
}

fn start(redis: &Redis, config: &std::path::Path, extra: &[(&str, &str)]) -> Worker {
    let url = redis.url();
    let mut env = vec![("SWITCHBOARD_REDIS_URL", url.as_str()), ("SWITCHBOARD_SECRET_KEY", SECRET_KEY)];
    env.extend_from_slice(extra);
    Worker::start(&env, Some(config))
}

/// Calls `echo` with `text` twice; the second answer must be the cached one.
async fn cached_echo(client: &reqwest::Client, worker: &Worker, session: &str, text: &str) {
    for cached in [false, true] {
        let (status, body) = call_tool(client, worker, session, "echo", json!({"text": text})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cached"], json!(cached), "{body}");
        assert!(body.to_string().contains(text), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_holds_no_token_identity_or_cached_result_in_clear() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let config = echo_cached(dir.path());
    let identity = json!({"sub": "alice", "email": "alice@corp.example", "groups": ["identity-canary-41"]});
    let auth = credentials_service(identity).await;
    let http_mode = [("SWITCHBOARD_AUTH_MODE", "http"), ("SWITCHBOARD_AUTH_URL", auth.as_str())];
    let worker = start(&redis, &config, &http_mode);
    let client = http();
    let token = "token-canary-7a1c";
    let session = init_with(&client, &worker, json!({"token": token})).await;
    let view = get_json(&client, &worker, "/session", &session).await;
    assert_eq!(view["principal"], "user:alice", "a user name is not a secret: {view}");
    cached_echo(&client, &worker, &session, "result-canary-93f0").await;
    let stored = dump(&redis);
    for secret in [token, "identity-canary-41", "alice@corp.example", "result-canary-93f0"] {
        assert!(!stored.contains(secret), "{secret} is in Redis in clear:\n{stored}");
    }
    assert!(stored.contains("sealed_identity") && stored.contains("sealed:"), "{stored}");

    // The control: with cache_seal off, the same scan finds a cached result (under the
    // field name earlier releases read).
    let plain = start(&redis, &config, &[http_mode[0], http_mode[1], ("SWITCHBOARD_CACHE_SEAL", "false")]);
    let other = init_with(&client, &plain, json!({"token": token})).await;
    cached_echo(&client, &plain, &other, "plain-canary-5d2e").await;
    assert!(dump(&redis).contains("plain-canary-5d2e"), "the scan sees what is in clear");
    // The sealed session still answers from its cache on the first worker.
    let (status, body) =
        call_tool(&client, &worker, &session, "echo", json!({"text": "result-canary-93f0"})).await;
    assert_eq!((status, &body["cached"]), (200, &json!(true)), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_is_a_keyed_mac_of_the_token_not_its_hash() {
    let redis = Redis::start();
    let other_redis = Redis::start();
    let tokens = [("SWITCHBOARD_AUTH_STATIC_TOKENS", "weak")];
    let first = Worker::with_redis(&redis, &tokens);
    let second = Worker::with_redis(&redis, &tokens);
    let rekeyed = Worker::start(
        &[
            ("SWITCHBOARD_REDIS_URL", other_redis.url().as_str()),
            ("SWITCHBOARD_SECRET_KEY", OTHER_KEY),
            tokens[0],
        ],
        None,
    );
    let client = http();
    let principal = |worker: &Worker| {
        let client = client.clone();
        let url = worker.url("/init");
        async move {
            let response =
                client.post(url).json(&json!({"credentials": {"token": "weak"}})).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.unwrap();
            body["session_id"].as_str().unwrap().to_string()
        }
    };
    let mut principals = Vec::new();
    for worker in [&first, &second, &rekeyed] {
        let session = principal(worker).await;
        let view = get_json(&client, worker, "/session", &session).await;
        principals.push(view["principal"].as_str().unwrap().to_string());
    }
    let unkeyed = blake3::hash(b"weak").to_hex().to_string();
    assert!(principals[0].starts_with("token:"), "{principals:?}");
    assert!(!principals[0].contains(&unkeyed[..16]), "not the unkeyed hash: {principals:?}");
    assert_eq!(principals[0], principals[1], "workers sharing the key agree");
    assert_ne!(principals[0], principals[2], "another key, another principal");
}

#[test]
fn check_config_prints_no_env_value_and_no_url_userinfo() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[auth]\nmode = \"http\"\nurl = \"https://svc-user:svc-pass@auth.example/check\"\n\
                [servers.api]\ncommand = [\"api\"]\nenv = { API_KEY = \"sk-live-constant\", ID = \"{credentials.token}\" }\n";
    let config = write_config(dir.path(), toml);
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_REDIS_URL", "redis://cache-user:cache-pass@127.0.0.1:1/0")
        .env("SWITCHBOARD_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    for secret in [
        "svc-user",
        "svc-pass",
        "cache-user",
        "cache-pass",
        "sk-live-constant",
        "{credentials.token}",
        SECRET_KEY,
    ] {
        assert!(!said.contains(secret), "{secret} printed:\n{said}");
    }
    assert!(said.contains("API_KEY") && said.contains("auth.example"), "{said}");
}
