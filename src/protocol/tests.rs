use super::*;

#[test]
fn negotiation_echoes_a_known_version_and_offers_the_newest_otherwise() {
    assert_eq!(negotiate(Some("2025-06-18"), SUPPORTED_VERSIONS), "2025-06-18");
    assert_eq!(negotiate(Some("2024-11-05"), SUPPORTED_VERSIONS), "2025-11-25");
    assert_eq!(negotiate(Some("2024-11-05"), STDIO_VERSIONS), "2024-11-05");
    assert_eq!(negotiate(Some("1999-01-01"), STDIO_VERSIONS), LATEST_VERSION);
    assert_eq!(negotiate(None, STDIO_VERSIONS), LATEST_VERSION);
}

#[test]
fn the_gateway_versions_are_the_stdio_versions_without_the_http_sse_era() {
    assert_eq!(SUPPORTED_VERSIONS[0], LATEST_VERSION);
    assert_eq!(STDIO_VERSIONS[0], LATEST_VERSION);
    assert_eq!(&STDIO_VERSIONS[..SUPPORTED_VERSIONS.len()], SUPPORTED_VERSIONS);
    assert_eq!(UPSTREAM_PROTOCOL_VERSION, LATEST_VERSION);
}

#[test]
fn capabilities_are_bounded_in_size_and_depth() {
    assert_eq!(json_depth(&serde_json::json!(1)), 0);
    assert_eq!(json_depth(&serde_json::json!({})), 1);
    assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": {}}], "c": 2})), 4);
    let usual =
        serde_json::json!({"sampling": {}, "roots": {"listChanged": true}, "elicitation": {"form": {}}});
    assert_eq!(capabilities_problem(&usual), None);
    let mut deep = serde_json::json!({});
    for _ in 0..MAX_CAPABILITIES_DEPTH {
        deep = serde_json::json!({ "x": deep });
    }
    let problem = capabilities_problem(&deep).unwrap_or_default();
    assert!(problem.contains(&format!("at most {MAX_CAPABILITIES_DEPTH} levels")), "{problem}");
    let wide = serde_json::json!({ "experimental": { "pad": "x".repeat(MAX_CAPABILITIES_BYTES) } });
    let problem = capabilities_problem(&wide).unwrap_or_default();
    assert!(problem.contains(&format!("at most {MAX_CAPABILITIES_BYTES}")), "{problem}");
}
