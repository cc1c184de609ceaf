//! Abuse findings: connections. Slowloris clients, idle keep-alives and connection floods
//! are cut off by the worker's limits (`[http]` in the config) while legitimate requests
//! keep being served, the worker never spins on a failing `accept`, and a web page cannot
//! reach the legacy API by DNS rebinding or a cross-site `text/plain` POST.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Nginx, Worker, call_tool, eventually, eventually_async, http, init, write_config};

/// A worker on the embedded store with the demo server and these `[http]` lines.
fn worker(dir: &tempfile::TempDir, http_lines: &str, slow_ms: u64) -> Worker {
    let text = format!(
        "[http]\n{http_lines}\n\n[servers.default]\ncommand = [\"{{switchboard}}\", \"demo-server\"]\n\
         [servers.default.env]\nDEMO_TOKEN = \"{{credentials.token}}\"\nDEMO_SLOW_MS = \"{slow_ms}\"\n"
    );
    let config = write_config(dir.path(), &text);
    Worker::start(&[], Some(&config))
}

async fn connect(worker: &Worker) -> TcpStream {
    TcpStream::connect(("127.0.0.1", worker.port)).await.unwrap()
}

/// Reads until the peer closes the connection (EOF or reset) and returns when that was;
/// `None` if it is still open after `limit`. What the worker sends first is skipped.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// A counter of the worker's metrics (summed over label sets matching `prefix`).
async fn metric(worker: &Worker, prefix: &str) -> f64 {
    let text = http().get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU time (user + system) the process has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file; 12 and 13 after the command.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

async fn healthz_ok(worker: &Worker) -> bool {
    // A fresh client each time: a pooled connection would not show whether new ones are served.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    matches!(client.get(worker.url("/healthz")).send().await, Ok(r) if r.status() == 200)
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_closed_after_the_header_read_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&dir, "header_read_timeout_secs = 1\nidle_timeout_secs = 60", 0);
    let mut stalled = Vec::new();
    for i in 0..200 {
        let opened = Instant::now();
        let mut stream = connect(&worker).await;
        // Half stall inside the request line, half inside the headers.
        let partial: &[u8] = if i % 2 == 0 {
            b"GET /healthz HT"
        } else {
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"
        };
        stream.write_all(partial).await.unwrap();
        stalled.push((opened, stream));
    }
    let client = http();
    let session = init(&client, &worker).await;
    let (status, body) =
        call_tool(&client, &worker, &session, "survey_summary", json!({"survey": "product-nps-2025"})).await;
    assert_eq!(status, 200, "a legitimate call is served beside 200 stalled connections: {body}");
    let closed = join_all(stalled.iter_mut().map(|(opened, stream)| async move {
        closed_within(stream, Duration::from_secs(20)).await.map(|at| at - *opened)
    }))
    .await;
    assert!(closed.iter().all(Option::is_some), "every stalled connection is closed");
    let earliest = closed.iter().flatten().min().copied().unwrap_or_default();
    assert!(earliest >= Duration::from_millis(900), "none before the timeout: {earliest:?}");
    assert!(
        metric(&worker, "switchboard_http_connection_events_total{reason=\"header_timeout\"}").await >= 200.0
    );
    assert!(healthz_ok(&worker).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alives_are_closed_after_the_idle_timeout_but_a_long_request_is_not() {
    let dir = tempfile::tempdir().unwrap();
    // The idle timeout is longer than the header-read timeout: waiting between requests is
    // governed by the first, a request's headers by the second.
    let worker = worker(&dir, "header_read_timeout_secs = 1\nidle_timeout_secs = 3", 4000);
    let mut stream = connect(&worker).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains(r#"{"status":"ok"}"#) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let closed =
        closed_within(&mut stream, Duration::from_secs(20)).await.expect("an idle keep-alive is closed");
    let idle = closed - answered;
    assert!(idle >= Duration::from_millis(2500), "kept past the header-read timeout: closed after {idle:?}");
    assert!(
        metric(&worker, "switchboard_http_connection_events_total{reason=\"idle_timeout\"}").await >= 1.0
    );

    // A call that takes longer than the idle timeout (4 s, nothing written meanwhile) on a
    // keep-alive connection is answered, and the connection serves the next one.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let session = init(&client, &worker).await;
    for _ in 0..2 {
        let (status, body) = call_tool(&client, &worker, &session, "list_surveys", json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn at_max_connections_excess_is_refused_quickly_and_service_resumes_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let worker =
        worker(&dir, "header_read_timeout_secs = 60\nidle_timeout_secs = 60\nmax_connections = 20", 0);
    assert!(healthz_ok(&worker).await);
    let cpu_before = cpu_time(worker.pid());
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(&worker).await);
    }
    // Every slot is taken (or about to be): extra requests wait about a second in the
    // backlog, then are closed unanswered. Bounded: a few attempts.
    let mut refused = 0;
    for _ in 0..3 {
        let begun = Instant::now();
        if !healthz_ok(&worker).await {
            refused += 1;
            assert!(begun.elapsed() < Duration::from_secs(5), "refused quickly, not left hanging");
        }
    }
    assert!(refused >= 2, "requests beyond the cap are refused ({refused} of 3)");
    held.truncate(10);
    assert!(
        eventually_async(Duration::from_secs(10), || healthz_ok(&worker)).await,
        "served again once slots are free"
    );
    let wall = started.elapsed();
    let cpu = cpu_time(worker.pid()).saturating_sub(cpu_before);
    assert!(cpu < wall / 2, "the worker waited, it did not spin: {cpu:?} of CPU in {wall:?}");
    drop(held);
    assert!(metric(&worker, "switchboard_http_connection_events_total{reason=\"over_limit\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&dir, "header_read_timeout_secs = 60\nidle_timeout_secs = 60", 0);
    assert!(healthz_ok(&worker).await);
    // A low open-file limit on the running worker, so a modest flood exhausts it.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &worker.pid().to_string(), "--nofile=128:128"])
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit");
    let cpu_before = cpu_time(worker.pid());
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..300 {
        // Beyond the worker's descriptors, connections complete into the listen backlog.
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", worker.port)))
            .await
        {
            Ok(Ok(stream)) => flood.push(stream),
            _ => break,
        }
    }
    assert!(flood.len() > 128, "more connections than the worker has descriptors ({})", flood.len());
    // The worker holds as many connections as it has descriptors for; its accepts fail.
    let pid = worker.pid();
    let open_fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    assert!(eventually(Duration::from_secs(10), || open_fds() >= 120), "exhausted: {} fds", open_fds());
    // Kept exhausted for a measured window: a spinning accept loop would burn it all.
    let window = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(flood);
    assert!(
        eventually_async(Duration::from_secs(30), || healthz_ok(&worker)).await,
        "the worker serves again once descriptors are free"
    );
    let wall = started.elapsed();
    let cpu = cpu_time(worker.pid()).saturating_sub(cpu_before);
    assert!(cpu < wall / 2, "the accept loop backed off, it did not spin: {cpu:?} of CPU in {wall:?}");
    assert!(
        metric(&worker, "switchboard_http_connection_events_total{reason=\"accept_failed\"}").await >= 1.0
    );
    let client = http();
    let session = init(&client, &worker).await;
    let (status, body) = call_tool(&client, &worker, &session, "list_surveys", json!({})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_api_refuses_dns_rebinding_and_cross_site_simple_requests() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&dir, "", 0);
    let client = http();
    let init_body = json!({"credentials": {"token": "demo"}});
    let post = |origin: Option<&str>, host: Option<&str>| {
        let mut request = client.post(worker.url("/init")).json(&init_body);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        if let Some(host) = host {
            request = request.header("Host", host);
        }
        request.send()
    };
    let error = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        error(post(Some("https://evil.example"), None).await.unwrap()).await,
        (403, "origin_not_allowed".into())
    );
    assert_eq!(
        error(post(None, Some("evil.example")).await.unwrap()).await,
        (421, "host_not_allowed".into())
    );
    let simple = client
        .post(worker.url("/init"))
        .header("Content-Type", "text/plain")
        .body(init_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(error(simple).await, (415, "unsupported_media_type".into()));
    let rebound = client.get(worker.url("/metrics")).header("Host", "evil.example").send().await.unwrap();
    assert_eq!(rebound.status(), 421, "metrics are not readable through a rebound name either");
    let charset = client
        .post(worker.url("/init"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(init_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_nginx_config_does_not_expose_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&dir, "", 0);
    let nginx = Nginx::start(&[worker.port]);
    let client = http();
    for path in ["/metrics", "/metrics?format=text", "//metrics", "/%6Detrics"] {
        let response = client.get(nginx.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(!text.contains("switchboard_"), "{path} through nginx shows metrics ({status})");
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(client.get(nginx.url("/healthz")).send().await.unwrap().status(), 200);
    let direct = client.get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        direct.contains("switchboard_http_requests_total"),
        "the worker itself still answers its scraper"
    );
}
