use std::time::Duration;

use super::{SseEvent, SseParser};

fn ev(data: &str) -> SseEvent {
    SseEvent { event: "message".into(), data: data.into() }
}

/// Feeds `input` split at every possible point; every split must give `expected`.
fn check(input: &str, expected: &[SseEvent]) {
    let bytes = input.as_bytes();
    for cut in 0..=bytes.len() {
        let mut parser = SseParser::new();
        let mut got = parser.push(&bytes[..cut]);
        got.extend(parser.push(&bytes[cut..]));
        assert_eq!(got, expected, "split at {cut} of {input:?}");
    }
}

#[test]
fn data_lines_are_joined_with_newlines() {
    check("data: a\ndata: b\n\n", &[ev("a\nb")]);
}

#[test]
fn crlf_cr_and_lf_all_end_lines() {
    check("data: x\r\n\r\ndata: y\r\rdata: z\n\n", &[ev("x"), ev("y"), ev("z")]);
}

#[test]
fn only_one_leading_space_is_stripped() {
    check("data:  two\n\ndata:none\n\n", &[ev(" two"), ev("none")]);
}

#[test]
fn comments_and_unknown_fields_are_ignored() {
    check(": keep-alive\nfoo: bar\ndata: {}\n\n", &[ev("{}")]);
}

#[test]
fn event_type_is_reported() {
    check("event: endpoint\ndata: /x\n\n", &[SseEvent { event: "endpoint".into(), data: "/x".into() }]);
}

#[test]
fn priming_event_sets_id_and_retry_and_has_empty_data() {
    let mut parser = SseParser::new();
    let events = parser.push(b"id: event-1\nretry: 500\ndata: \n\n");
    assert_eq!(events, vec![ev("")]);
    assert_eq!(parser.last_event_id(), Some("event-1"));
    assert_eq!(parser.retry(), Some(Duration::from_millis(500)));
}

#[test]
fn event_without_data_is_not_dispatched_but_id_sticks() {
    let mut parser = SseParser::new();
    assert!(parser.push(b"id: 7\n\n").is_empty());
    assert_eq!(parser.last_event_id(), Some("7"));
}

#[test]
fn invalid_retry_is_ignored() {
    let mut parser = SseParser::new();
    parser.push(b"retry: 12a\n\nretry:\n\n");
    assert_eq!(parser.retry(), None);
}

#[test]
fn resume_keeps_id_and_retry_but_drops_partial_input() {
    let mut parser = SseParser::new();
    parser.push(b"id: 3\nretry: 10\ndata: {\"partial");
    let mut resumed = parser.resume();
    assert_eq!(resumed.last_event_id(), Some("3"));
    assert_eq!(resumed.retry(), Some(Duration::from_millis(10)));
    assert_eq!(resumed.push(b"data: ok\n\n"), vec![ev("ok")]);
}

#[test]
fn id_with_nul_is_ignored() {
    let mut parser = SseParser::new();
    parser.push(b"id: a\0b\ndata: x\n\n");
    assert_eq!(parser.last_event_id(), None);
}
