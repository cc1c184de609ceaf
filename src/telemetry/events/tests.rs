use std::time::Duration;

use super::*;

fn sample(metrics: &Metrics, line_start: &str) -> Option<f64> {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn each_cache_op_counts_under_its_own_label() {
    let metrics = Metrics::new();
    CacheLookup(CacheOp::Hit).emit(&metrics);
    CacheLookup(CacheOp::Hit).emit(&metrics);
    CacheLookup(CacheOp::Bypass).emit(&metrics);
    CacheLookup(CacheOp::HitAfterWait).emit(&metrics);
    assert_eq!(sample(&metrics, r#"switchboard_cache_total{op="hit"}"#), Some(2.0));
    assert_eq!(sample(&metrics, r#"switchboard_cache_total{op="bypass"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchboard_cache_total{op="hit_after_wait"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchboard_cache_total{op="miss"}"#), None);
}

#[test]
fn requests_refusals_sessions_and_spawns_are_counted() {
    let metrics = Metrics::new();
    RequestCompleted { route: "/mcp", status: 406, elapsed: Duration::from_millis(3) }.emit(&metrics);
    Refusal::NotAcceptable.emit(&metrics);
    SessionEvent::Created.emit(&metrics);
    Spawned { server: "default" }.emit(&metrics);
    let error = std::io::Error::from(std::io::ErrorKind::NotFound);
    SpawnFailed { server: "default", error: &error }.emit(&metrics);
    SpawnReady { server: "default", elapsed: Duration::from_millis(5) }.emit(&metrics);
    assert_eq!(sample(&metrics, r#"switchboard_http_requests_total{route="/mcp",status="406"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchboard_refusals_total{reason="not_acceptable"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchboard_sessions_total{op="created"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchboard_mcp_spawns_total{server="default"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchboard_mcp_spawn_failures_total{server="default"}"#), Some(1.0));
    assert_eq!(
        sample(&metrics, r#"switchboard_mcp_spawn_duration_seconds_count{server="default"}"#),
        Some(1.0)
    );
}

#[test]
fn every_metric_family_is_registered_once() {
    let text = Metrics::new().render();
    let mut seen = std::collections::HashSet::new();
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        assert!(seen.insert(family.to_string()), "registered twice: {family}");
    }
    assert!(!seen.is_empty(), "{text}");
}
