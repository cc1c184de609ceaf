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
