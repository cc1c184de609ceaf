use serde_json::json;
use serde_json::value::RawValue;

use super::*;

#[test]
fn credentials_map_into_templates() {
    let creds = json!({"token": "t0k", "org": {"id": 42}});
    assert_eq!(Template::parse("{credentials.token}").render(&creds).as_deref(), Some("t0k"));
    assert_eq!(Template::parse("Bearer {credentials.token}!").render(&creds).as_deref(), Some("Bearer t0k!"));
    assert_eq!(Template::parse("{credentials.org.id}").render(&creds).as_deref(), Some("42"));
    assert_eq!(Template::parse("{credentials.missing}").render(&creds), None);
    assert!(Template::parse("plain").is_constant());
    assert!(!Template::parse("{credentials.token}").is_constant());
    assert_eq!(Template::parse("{credentials.token").render(&creds).as_deref(), Some("{credentials.token"));
}

#[test]
fn claims_map_into_templates_as_credentials_claims() {
    let creds = json!({"token": "t0k", "claims": {"email": "a@b.c", "sub": "u1"}});
    let mixed = Template::parse("{claims.sub}:{credentials.token}:{claims.email}");
    assert_eq!(mixed.render(&creds).as_deref(), Some("u1:t0k:a@b.c"));
    assert!(!Template::parse("{claims.email}").is_constant());
    assert_eq!(Template::parse("{claims.missing}").render(&creds), None);
    assert_eq!(Template::parse("{claims.email}").render(&json!({"token": "t"})), None);
}

/// A tiny MCP server in POSIX sh: `initialize` (an error with id null with `MODE=initerr`),
/// a two-page `tools/list` (an error with `MODE=nolist`), and `tools/call` answering with its
/// `TOKEN` and its own pid (never, with `TOKEN=hang`).
const FIXTURE: &str = r#"
while IFS= read -r line; do
  rest=${line#*\"id\":}; id=${rest%%,*}
  case "$line" in
    *'"method":"initialize"'*)
      [ "$MODE" = initerr ] && echo '{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"no such capability"}}' && continue
      echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"fx\",\"version\":\"0\"}}}" ;;
    *'"method":"tools/list"'*)
      if [ "$MODE" = nolist ]; then
        echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"error\":{\"code\":-32601,\"message\":\"no\"}}"
      else case "$line" in
        *'"cursor":"p2"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"tools\":[{\"name\":\"two\",\"annotations\":{\"readOnlyHint\":true}}]}}" ;;
        *) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"tools\":[{\"name\":\"one\"}],\"nextCursor\":\"p2\"}}" ;;
      esac fi ;;
    *'"method":"tools/call"'*)
      [ "$TOKEN" = hang ] && continue
      echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"token=$TOKEN pid=$$\"}]}}" ;;
  esac
done
"#;

struct Fixture {
    manager: Arc<McpManager>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

fn fixture(extra: &str, server_extra: &str) -> Fixture {
    fixture_in_mode("ok", extra, server_extra)
}

fn fixture_in_mode(mode: &str, extra: &str, server_extra: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("server.sh");
    std::fs::write(&script, FIXTURE).expect("write fixture");
    let toml = format!(
        r#"{extra}
[servers.fx]
command = ["/bin/sh", "{}"]
inherit_env = []
env = {{ TOKEN = "{{credentials.token}}", MODE = "{mode}", PATH = "/usr/bin:/bin" }}
shutdown_grace_secs = 0.5
{server_extra}
"#,
        script.display()
    );
    let config = Config::load(Some(&toml), &|_| None, "/bin/false").expect("config");
    let metrics = Arc::new(Metrics::new());
    let manager = Arc::new(McpManager::new(&config, &|_| None, metrics.clone()));
    Fixture { manager, metrics, _dir: dir }
}

/// The value of one metric line (name with labels, as rendered), 0 if absent.
fn metric(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

const CALL_PARAMS: &str = r#"{"name":"one","arguments":{}}"#;

async fn call(
    f: &Fixture,
    session: Option<&str>,
    token: &str,
    list_tools: bool,
) -> Result<Outcome, UpstreamError> {
    call_for(f, session, token, list_tools, None).await
}

async fn call_for(
    f: &Fixture,
    session: Option<&str>,
    token: &str,
    list_tools: bool,
    principal: Option<&str>,
) -> Result<Outcome, UpstreamError> {
    let credentials = json!({ "token": token });
    let params = RawValue::from_string(CALL_PARAMS.into()).expect("params");
    f.manager
        .call_with(Call {
            server: "fx",
            credentials: &credentials,
            client: Client::default(),
            method: "tools/call",
            params: Some(&params),
            relay: None,
            session,
            list_tools,
            principal,
        })
        .await
}

/// The `token=… pid=…` text of a call's result.
fn said(outcome: &Outcome) -> (String, String) {
    let value: serde_json::Value = serde_json::from_str(outcome.result.get()).expect("json");
    let text = value["content"][0]["text"].as_str().expect("text").to_string();
    let (token, pid) = text.split_once(' ').expect("two words");
    (token.trim_start_matches("token=").to_string(), pid.trim_start_matches("pid=").to_string())
}

async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// Whether the worker comes to hold `n` warm children (within 5 s).
async fn holds_warm(f: &Fixture, n: usize) -> bool {
    eventually(Duration::from_secs(5), || f.manager.warm_children().0 == n).await
}

async fn no_children_left(f: &Fixture) {
    f.manager.drain();
    assert!(
        eventually(Duration::from_secs(5), || f.manager.live_children() == 0).await,
        "{} children left",
        f.manager.live_children()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_also_reads_every_page_of_the_tool_list_from_the_same_child() {
    let f = fixture("", "warm_idle_secs = 0");
    let outcome = call(&f, None, "t", true).await.expect("call");
    let tools = outcome.tools.as_ref().expect("the list came with the call");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(said(&outcome).0, "t");
    assert_eq!(metric(&f.metrics, r#"switchboard_mcp_spawns_total{server="fx"}"#), 1.0, "no extra spawn");
    let plain = call(&f, None, "t", false).await.expect("call");
    assert!(plain.tools.is_none(), "only when asked");
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_list_its_tools_still_answers_the_call() {
    let f = fixture_in_mode("nolist", "", "warm_idle_secs = 0");
    let outcome = call(&f, None, "t", true).await.expect("the call succeeds");
    assert!(outcome.tools.is_none());
    assert_eq!(said(&outcome).0, "t");
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_child_serves_the_next_call_of_its_own_session_only() {
    let f = fixture("max_children = 4", "");
    let first = call(&f, Some("session-a"), "token-a", false).await.expect("call");
    let ready = || f.manager.warm_children().0 == 1 && f.manager.warm_children().1 > 0;
    assert!(eventually(Duration::from_secs(5), ready).await, "ready, its memory known");
    // Another session never gets it.
    let other = call(&f, Some("session-b"), "token-b", false).await.expect("call");
    assert_eq!(said(&other).0, "token-b");
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_starts_total{server="fx",outcome="miss"}"#), 2.0);
    // Its own session does, and it is a child other than the first.
    assert!(holds_warm(&f, 2).await);
    let again = call(&f, Some("session-a"), "token-a", false).await.expect("call");
    assert_eq!(said(&again).0, "token-a");
    assert_ne!(said(&again).1, said(&first).1, "each child serves one request");
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_starts_total{server="fx",outcome="hit"}"#), 1.0);
    no_children_left(&f).await;
    assert_eq!(f.manager.warm_children().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_credentials_never_reach_the_old_warm_child() {
    let f = fixture("max_children = 4", "");
    call(&f, Some("s"), "old", false).await.expect("call");
    assert!(holds_warm(&f, 1).await);
    let outcome = call(&f, Some("s"), "new", false).await.expect("call");
    assert_eq!(said(&outcome).0, "new");
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_evictions_total{reason="stale"}"#), 1.0);
    // The next warm child carries the new credentials.
    assert!(holds_warm(&f, 1).await);
    let outcome = call(&f, Some("s"), "new", false).await.expect("call");
    assert_eq!(said(&outcome).0, "new");
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_starts_total{server="fx",outcome="hit"}"#), 1.0);
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_session_takes_its_warm_child_down() {
    let f = fixture("max_children = 4", "");
    call(&f, Some("gone"), "t", false).await.expect("call");
    assert!(holds_warm(&f, 1).await);
    f.manager.forget_session("other");
    assert_eq!(f.manager.warm_children().0, 1, "only that session's children go");
    f.manager.forget_session("gone");
    assert_eq!(f.manager.warm_children().0, 0);
    assert!(eventually(Duration::from_secs(5), || f.manager.live_children() == 0).await, "reaped");
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_evictions_total{reason="forgotten"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_children_stay_within_their_count_and_go_when_idle() {
    let f = fixture("max_children = 6\nwarm_max_children = 2", "warm_idle_secs = 1.5");
    for i in 0..6 {
        call(&f, Some(&format!("s{i}")), "t", false).await.expect("call");
        let spawned = (i + 1) as f64;
        assert!(
            eventually(Duration::from_secs(5), || {
                metric(&f.metrics, r#"switchboard_warm_spawns_total{server="fx"}"#) == spawned
                    && f.manager.warm_children().0 == (i + 1).min(2)
            })
            .await
        );
        assert!(f.manager.live_children() <= 6);
    }
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_evictions_total{reason="count"}"#), 4.0);
    // Least recently used first: the last two sessions kept theirs.
    call(&f, Some("s5"), "t", false).await.expect("call");
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_starts_total{server="fx",outcome="hit"}"#), 1.0);
    assert!(eventually(Duration::from_secs(6), || f.manager.warm_children().0 == 0).await, "idle ones go");
    assert!(metric(&f.metrics, r#"switchboard_warm_evictions_total{reason="idle"}"#) >= 1.0);
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_children_stay_within_their_memory_bound() {
    // 1 MiB: less than any shell's resident memory, so no child is ever kept.
    let f = fixture("max_children = 4\nwarm_max_rss_mb = 1", "");
    call(&f, Some("s"), "t", false).await.expect("call");
    assert!(
        eventually(Duration::from_secs(5), || {
            metric(&f.metrics, r#"switchboard_warm_evictions_total{reason="rss"}"#) == 1.0
        })
        .await
    );
    assert_eq!(f.manager.warm_children().0, 0);
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_takes_the_slot_of_a_warm_child_instead_of_waiting() {
    let f = fixture("max_children = 2\nqueue_wait_secs = 3", "");
    call(&f, Some("a"), "t", false).await.expect("call");
    assert!(holds_warm(&f, 1).await);
    call(&f, Some("b"), "t", false).await.expect("call");
    assert!(holds_warm(&f, 2).await);
    // Both slots are held by warm children now: a third session's call evicts one.
    let started = Instant::now();
    let outcome = call(&f, Some("c"), "c", false).await.expect("call");
    assert_eq!(said(&outcome).0, "c");
    assert!(started.elapsed() < Duration::from_secs(2), "did not wait for the queue");
    assert!(metric(&f.metrics, r#"switchboard_warm_evictions_total{reason="capacity"}"#) >= 1.0);
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_warm_starts_when_turned_off_or_after_drain() {
    let f = fixture("max_children = 4", "warm_idle_secs = 0");
    call(&f, Some("s"), "t", false).await.expect("call");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.manager.warm_children().0, 0);
    assert_eq!(metric(&f.metrics, r#"switchboard_warm_spawns_total{server="fx"}"#), 0.0);
    let f = fixture("max_children = 4", "");
    f.manager.drain();
    call(&f, Some("s"), "t", false).await.expect("calls still work while draining");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.manager.warm_children().0, 0);
    no_children_left(&f).await;
}

#[test]
fn programs_are_resolved_on_the_childs_path() {
    assert_eq!(resolve_program("sh", Some("/nonexistent::/bin")), "/bin/sh");
    assert_eq!(resolve_program("./local/server", Some("/bin")), "./local/server");
    assert_eq!(resolve_program("no-such-program-here", Some("/bin")), "no-such-program-here");
    assert_eq!(resolve_program("sh", None), "sh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_started_without_a_parent_death_signal_work_the_same() {
    let f = fixture("", "parent_death_signal = false");
    let outcome = call(&f, Some("s"), "t", true).await.expect("call");
    assert_eq!(said(&outcome).0, "t");
    assert!(outcome.tools.is_some());
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_to_initialize_ends_the_call_at_once_whatever_its_id() {
    let f = fixture_in_mode("initerr", "", "init_timeout_secs = 30\nwarm_idle_secs = 0");
    let started = Instant::now();
    let outcome = call(&f, None, "t", false).await;
    assert!(
        matches!(&outcome, Err(UpstreamError::InitRefused(m)) if m.contains("-32602") && m.contains("no such capability")),
        "{:?}",
        outcome.err()
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not the 30 s init timeout");
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_holding_its_share_does_not_keep_others_from_a_slot() {
    // Two slots, so each principal's share is one.
    let f = fixture("max_children = 2\nqueue_wait_secs = 0.5", "warm_idle_secs = 0\ncall_timeout_secs = 20");
    // The hanging call runs beside the rest, and is dropped (given up) at the end of this block.
    {
        let hanging = call_for(&f, None, "hang", false, Some("mallory"));
        tokio::pin!(hanging);
        let rest = async {
            let held = || {
                f.manager.principal_calls() == vec![("mallory".to_string(), 1)]
                    && f.manager.live_children() == 1
            };
            assert!(eventually(Duration::from_secs(5), held).await, "{:?}", f.manager.principal_calls());
            // Past its share: it waits for its own calls, and gets 503 after the queue wait.
            let second = call_for(&f, None, "hang", false, Some("mallory")).await;
            assert!(matches!(second, Err(UpstreamError::Saturated)), "{:?}", second.err());
            assert_eq!(metric(&f.metrics, r#"switchboard_limits_total{limit="principal_share"}"#), 1.0);
            // Someone else is served meanwhile, on the other slot.
            let other = call_for(&f, None, "alice-token", false, Some("alice")).await.expect("served");
            assert_eq!(said(&other).0, "alice-token");
        };
        tokio::select! {
            outcome = &mut hanging => panic!("the hanging call ended: {:?}", outcome.err()),
            () = rest => {}
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || f.manager.principal_calls().is_empty()).await,
        "no entry left"
    );
    no_children_left(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_share_limit_one_principal_may_take_every_slot() {
    let f = fixture("max_children = 2\nmax_children_per_principal = 0", "warm_idle_secs = 0");
    let (a, b) =
        tokio::join!(call_for(&f, None, "x", false, Some("p")), call_for(&f, None, "y", false, Some("p")));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(metric(&f.metrics, r#"switchboard_limits_total{limit="principal_share"}"#), 0.0);
    no_children_left(&f).await;
}
