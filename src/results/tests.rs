use serde_json::json;

use super::*;

#[test]
fn canonical_keys_ignore_key_order_and_number_spelling() {
    let a = json!({"b": 1, "a": {"y": 2.0, "x": [1, 2]}});
    let b: Value = serde_json::from_str(r#"{"a":{"x":[1,2],"y":2},"b":1.0}"#).unwrap();
    assert_eq!(canonical(&a), canonical(&b));
    assert_eq!(canonical(&a), r#"{"a":{"x":[1,2],"y":2},"b":1}"#);
    assert_eq!(cache_field("s", "t", &a), cache_field("s", "t", &b));
    assert_ne!(cache_field("s", "t", &a), cache_field("s", "u", &a));
    assert_ne!(canonical(&json!({"n": 1.5})), canonical(&json!({"n": 1})));
}

#[test]
fn a_filter_keeps_what_it_selects_in_structured_and_text_content() {
    let policy = ToolPolicy {
        cache: CacheMode::Auto,
        cache_ttl: Duration::from_secs(1),
        filter: Some(Filter::compile("{nps, responses}").unwrap()),
        max_result_bytes: None,
    };
    let result = json!({
        "content": [{"type": "text", "text": r#"{"nps":25.7,"responses":140,"promoters":63}"#}],
        "structuredContent": {"nps": 25.7, "responses": 140, "promoters": 63}
    });
    let shown: Value = serde_json::from_str(&policy.present(&result.to_string(), false)).unwrap();
    assert_eq!(shown["structuredContent"], json!({"nps": 25.7, "responses": 140}));
    assert_eq!(
        serde_json::from_str::<Value>(shown["content"][0]["text"].as_str().unwrap()).unwrap(),
        json!({"nps": 25.7, "responses": 140})
    );
}

#[test]
fn bad_filters_are_refused_and_env_is_not_available() {
    assert!(Filter::compile("{nps").is_err());
    assert!(Filter::compile("env").is_err());
    assert!(Filter::compile("$ENV").is_err());
}

#[test]
fn a_cache_ttl_that_is_no_duration_is_refused_not_a_panic() {
    // Found by the config_load fuzz target: `Duration::from_secs_f64` panicked on these.
    for secs in [-1.0, -0.0001, f64::NAN, f64::INFINITY, 1e300] {
        let mut server = crate::config::ServerConfig::default();
        let tool = crate::config::ToolConfig { cache_ttl_secs: Some(secs), ..Default::default() };
        server.tools.insert("t".into(), tool);
        let err = ToolPolicy::from_config(&server, "t", Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("tool `t`: cache_ttl_secs"), "{secs}: {err}");
    }
    let mut server = crate::config::ServerConfig::default();
    let tool = crate::config::ToolConfig { cache_ttl_secs: Some(0.5), ..Default::default() };
    server.tools.insert("t".into(), tool);
    let policy = ToolPolicy::from_config(&server, "t", Duration::from_secs(1)).unwrap();
    assert_eq!(policy.cache_ttl, Duration::from_millis(500));
}

#[test]
fn over_long_results_are_cut_with_a_marker() {
    let result =
        json!({"content": [{"type": "text", "text": "x".repeat(10_000)}], "structuredContent": {"a": 1}});
    let policy = ToolPolicy {
        cache: CacheMode::Never,
        cache_ttl: Duration::ZERO,
        filter: None,
        max_result_bytes: Some(1000),
    };
    let shown = policy.present(&result.to_string(), false);
    assert!(shown.len() <= 1000, "{}", shown.len());
    assert!(shown.contains("[truncated by switchboard: the full result is"));
    let value: Value = serde_json::from_str(&shown).unwrap();
    assert!(value.get("structuredContent").is_none());
}

#[test]
fn auto_caches_only_read_only_tools_of_a_closed_world() {
    let policy =
        |cache| ToolPolicy { cache, cache_ttl: Duration::ZERO, filter: None, max_result_bytes: None };
    let closed = json!({"readOnlyHint": true, "openWorldHint": false});
    let open = json!({"readOnlyHint": true});
    let destructive = json!({"readOnlyHint": false, "destructiveHint": true, "openWorldHint": false});
    assert!(policy(CacheMode::Auto).may_cache(Some(&closed)));
    assert!(!policy(CacheMode::Auto).may_cache(Some(&open)));
    assert!(!policy(CacheMode::Auto).may_cache(Some(&destructive)));
    assert!(!policy(CacheMode::Auto).may_cache(None));
    assert!(!policy(CacheMode::Never).may_cache(Some(&closed)));
    assert!(policy(CacheMode::Always).may_cache(None));
    assert!(is_error(r#"{"content":[],"isError":true}"#));
    assert!(!is_error(r#"{"content":[]}"#));
}
