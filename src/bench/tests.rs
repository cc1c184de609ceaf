use std::time::Duration;

use super::options::{BenchOptions, Scenario, parse_arguments, parse_duration};
use super::reply::find_reply;
use super::report::{BenchReport, ErrorKind, Outcome, Tally};
use super::scenario::{Target, ToolResultFlag};

fn outcome(text: &str, id: u64) -> Option<&'static str> {
    let reply = find_reply::<ToolResultFlag>(text.as_bytes(), id)?;
    Some(match (reply.error, reply.result) {
        (Some(_), _) => "rpc_error",
        (None, Some(flag)) if flag.is_error => "tool_error",
        (None, Some(_)) => "ok",
        (None, None) => "empty",
    })
}

#[test]
fn reply_is_matched_by_id_in_messages_and_batches() {
    let cases: &[(&str, u64, Option<&str>)] = &[
        (r#"{"jsonrpc":"2.0","id":5,"result":{"content":[]}}"#, 5, Some("ok")),
        (r#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"isError":true}}"#, 5, Some("tool_error")),
        (r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"no"}}"#, 5, Some("rpc_error")),
        (r#"{"jsonrpc":"2.0","id":4,"result":{}}"#, 5, None),
        (r#"{"jsonrpc":"2.0","id":"5","result":{}}"#, 5, None),
        (r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#, 5, None),
        (r#"{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage","params":{}}"#, 5, None),
        (
            r#"[{"jsonrpc":"2.0","id":4,"result":{}},{"jsonrpc":"2.0","id":5,"result":{"isError":false}}]"#,
            5,
            Some("ok"),
        ),
        ("not json", 5, None),
        ("", 5, None),
        ("   ", 5, None),
    ];
    for (text, id, expected) in cases {
        assert_eq!(outcome(text, *id), *expected, "{text}");
    }
}

fn report_of(latencies_ms: &[u64], failures: &[ErrorKind]) -> BenchReport {
    let mut tally = Tally::new().unwrap();
    for ms in latencies_ms {
        tally.record(Outcome::Ok { cached: *ms == 1 }, Duration::from_millis(*ms));
    }
    for kind in failures {
        tally.record(Outcome::Failed(*kind), Duration::from_millis(1));
    }
    let mut merged = Tally::new().unwrap();
    merged.merge(&tally).unwrap();
    BenchReport::from_tally(
        Scenario::Call,
        "http://127.0.0.1:1/call-tool".into(),
        2,
        Duration::from_secs(10),
        &merged,
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b * 0.001 + 1e-9
}

#[test]
fn percentiles_come_from_successful_calls_only() {
    let latencies: Vec<u64> = (1..=100).collect();
    let report = report_of(
        &latencies,
        &[ErrorKind::Http(503), ErrorKind::Http(503), ErrorKind::Timeout, ErrorKind::ToolError],
    );
    assert_eq!(report.ok, 100);
    assert_eq!(report.errors, 4);
    assert_eq!(report.cached, 1);
    assert!(close(report.calls_per_sec, 10.0), "{}", report.calls_per_sec);
    assert!(close(report.p50_ms, 50.0), "{}", report.p50_ms);
    assert!(close(report.p90_ms, 90.0), "{}", report.p90_ms);
    assert!(close(report.p99_ms, 99.0), "{}", report.p99_ms);
    assert!(close(report.max_ms, 100.0), "{}", report.max_ms);
    assert!(close(report.min_ms, 1.0), "{}", report.min_ms);
    let kinds: Vec<(&str, u64)> = report.errors_by_kind.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(kinds, vec![("http_503", 2), ("timeout", 1), ("tool_error", 1)]);
}

#[test]
fn json_has_the_documented_fields() {
    let json = report_of(&[2, 4], &[ErrorKind::RpcError]).to_json();
    for field in ["calls_per_sec", "p50_ms", "p90_ms", "p99_ms", "max_ms", "ok", "errors", "errors_by_kind"] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["errors_by_kind"]["rpc_error"], 1);
    assert_eq!(json["scenario"], "call");
}

#[test]
fn empty_run_reports_zeros_not_nan() {
    let report = report_of(&[], &[ErrorKind::Connect]);
    assert_eq!(report.ok, 0);
    assert_eq!(report.p50_ms, 0.0);
    assert_eq!(report.calls_per_sec, 0.0);
    let table = report.render_table();
    assert!(table.contains("connect 1"), "{table}");
    assert!(!table.contains("NaN"), "{table}");
}

#[test]
fn table_is_markdown_with_one_row() {
    let table = report_of(&[3], &[]).render_table();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[2].contains("| 3.00"), "{table}");
}

#[test]
fn durations_parse_with_units() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("10s", Some(Duration::from_secs(10))),
        ("10", Some(Duration::from_secs(10))),
        ("1.5s", Some(Duration::from_millis(1500))),
        ("250ms", Some(Duration::from_millis(250))),
        ("2m", Some(Duration::from_secs(120))),
        ("s", None),
        ("10 parsecs", None),
        ("-1s", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text).ok(), *expected, "{text}");
    }
}

#[test]
fn arguments_must_be_an_object() {
    assert!(parse_arguments(r#"{"text":"hi"}"#).is_ok());
    assert!(parse_arguments("[1]").is_err());
    assert!(parse_arguments("{").is_err());
}

#[test]
fn scenarios_round_trip_through_their_names() {
    for scenario in [Scenario::Init, Scenario::Call, Scenario::CallCached, Scenario::Mcp, Scenario::McpModern]
    {
        assert_eq!(scenario.as_str().parse::<Scenario>(), Ok(scenario));
    }
    assert!("calls".parse::<Scenario>().is_err());
}

#[test]
fn mcp_url_is_derived_from_the_base_url() {
    let target = |url: &str, scenario| {
        let opts = BenchOptions { url: url.into(), scenario, ..BenchOptions::default() };
        Target::new(&opts).unwrap().timed_url().to_owned()
    };
    assert_eq!(target("http://h:1", Scenario::Mcp), "http://h:1/mcp");
    assert_eq!(target("http://h:1/", Scenario::Mcp), "http://h:1/mcp");
    assert_eq!(target("http://h:1/mcp", Scenario::Mcp), "http://h:1/mcp");
    assert_eq!(target("http://h:1/mcp", Scenario::Call), "http://h:1/call-tool");
    assert_eq!(target("http://h:1/x", Scenario::Init), "http://h:1/x/init");
    let bad = BenchOptions { url: "ftp://h".into(), ..BenchOptions::default() };
    assert!(Target::new(&bad).is_err());
}

#[tokio::test]
async fn zero_concurrency_is_rejected_before_any_request() {
    let opts = BenchOptions { concurrency: 0, ..BenchOptions::default() };
    assert!(matches!(super::run(&opts).await, Err(super::BenchError::InvalidOptions(_))));
}

#[tokio::test]
async fn unreachable_target_fails_setup_with_a_clear_error() {
    // A port that was just free: connecting fails, and the error must name
    // the step instead of panicking or hanging.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let opts = BenchOptions {
        url: format!("http://127.0.0.1:{port}"),
        scenario: Scenario::Mcp,
        duration: Duration::from_millis(200),
        ..BenchOptions::default()
    };
    let err = super::run(&opts).await.unwrap_err();
    assert!(matches!(err, super::BenchError::Setup { step: "initialize", .. }), "{err}");
}

/// A stand-in worker on a free loopback port: `/init`, `/call-tool` (cache
/// on the second call unless `cache: false`), and `/mcp` answering
/// `tools/call` over SSE with a notification before the reply.
async fn mock_worker() -> String {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::post;

    async fn init() -> impl IntoResponse {
        axum::Json(serde_json::json!({ "session_id": "s-1", "idle_ttl_secs": 60 }))
    }
    async fn call_tool(headers: HeaderMap, body: String) -> impl IntoResponse {
        if headers.get("mcp-session-id").is_none() {
            return (StatusCode::NOT_FOUND, "{}".to_owned());
        }
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let cached = body.get("cache") != Some(&serde_json::Value::Bool(false));
        let is_error = body["tool"] == "fail";
        let reply = serde_json::json!({
            "result": { "content": [], "isError": is_error },
            "cached": cached,
        });
        (StatusCode::OK, reply.to_string())
    }
    async fn mcp(body: String) -> axum::response::Response {
        let msg: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let id = msg["id"].clone();
        match msg["method"].as_str() {
            Some("initialize") => (
                [("mcp-session-id", "m-1")],
                axum::Json(serde_json::json!({
                    "jsonrpc": "2.0", "id": id,
                    "result": { "protocolVersion": "2025-06-18", "capabilities": {} },
                })),
            )
                .into_response(),
            Some("tools/call") => {
                let sse = format!(
                    "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\n\
                     event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[]}}}}\n\n"
                );
                ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
            }
            _ => StatusCode::ACCEPTED.into_response(),
        }
    }
    let app = Router::new()
        .route("/init", post(init))
        .route("/call-tool", post(call_tool))
        .route("/mcp", post(mcp));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn run_against_mock(scenario: Scenario, tool: &str) -> BenchReport {
    let opts = BenchOptions {
        url: mock_worker().await,
        scenario,
        concurrency: 3,
        duration: Duration::from_secs(5),
        requests: Some(60),
        tool: tool.into(),
        ..BenchOptions::default()
    };
    super::run(&opts).await.unwrap()
}

#[tokio::test]
async fn every_scenario_stops_at_the_request_budget() {
    for scenario in [Scenario::Init, Scenario::Call, Scenario::CallCached, Scenario::Mcp, Scenario::McpModern]
    {
        let report = run_against_mock(scenario, "echo").await;
        assert_eq!((report.ok, report.errors), (60, 0), "{scenario}: {report:?}");
        let expected_cached = if scenario == Scenario::CallCached { 60 } else { 0 };
        assert_eq!(report.cached, expected_cached, "{scenario}");
        assert!(report.p50_ms > 0.0 && report.max_ms >= report.p99_ms, "{report:?}");
    }
}

#[tokio::test]
async fn tool_failures_are_counted_as_tool_error() {
    let report = run_against_mock(Scenario::Call, "fail").await;
    assert_eq!(report.ok, 0);
    assert_eq!(report.errors_by_kind.get("tool_error"), Some(&60));
}

#[tokio::test]
async fn duration_bounds_a_run_without_a_budget() {
    let opts = BenchOptions {
        url: mock_worker().await,
        scenario: Scenario::Mcp,
        concurrency: 2,
        duration: Duration::from_millis(300),
        ..BenchOptions::default()
    };
    let started = std::time::Instant::now();
    let report = super::run(&opts).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.ok > 0 && report.elapsed_secs <= 0.3 + 1e-9, "{report:?}");
}

#[test]
fn a_result_served_from_the_cache_is_counted_as_a_hit_on_every_route() {
    let flag = |text: &str| serde_json::from_str::<ToolResultFlag>(text).expect("a tool result");
    assert!(flag(r#"{"content":[],"_meta":{"switchboard/cached":true}}"#).cached());
    assert!(!flag(r#"{"content":[],"_meta":{"progressToken":1}}"#).cached());
    assert!(!flag(r#"{"content":[]}"#).cached());
    assert!(flag(r#"{"isError":true,"content":[]}"#).is_error);
}
