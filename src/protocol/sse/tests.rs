use std::time::Duration;

use super::{SseDecoder, SseEvent, SseTooLarge};

fn ev(data: &str) -> SseEvent {
    SseEvent { event: "message".into(), data: data.into() }
}

/// Feeds `input` split at every possible point; every split must give `expected`.
fn check(input: &str, expected: &[SseEvent]) {
    let bytes = input.as_bytes();
    for cut in 0..=bytes.len() {
        let mut parser = SseDecoder::new();
        let mut got = parser.push(&bytes[..cut]).unwrap();
        got.extend(parser.push(&bytes[cut..]).unwrap());
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
    let mut parser = SseDecoder::new();
    let events = parser.push(b"id: event-1\nretry: 500\ndata: \n\n").unwrap();
    assert_eq!(events, vec![ev("")]);
    assert_eq!(parser.last_event_id(), Some("event-1"));
    assert_eq!(parser.retry(), Some(Duration::from_millis(500)));
}

#[test]
fn event_without_data_is_not_dispatched_but_id_sticks() {
    let mut parser = SseDecoder::new();
    assert!(parser.push(b"id: 7\n\n").unwrap().is_empty());
    assert_eq!(parser.last_event_id(), Some("7"));
}

#[test]
fn invalid_retry_is_ignored() {
    let mut parser = SseDecoder::new();
    parser.push(b"retry: 12a\n\nretry:\n\n").unwrap();
    assert_eq!(parser.retry(), None);
}

#[test]
fn resume_keeps_id_and_retry_but_drops_partial_input() {
    let mut parser = SseDecoder::new();
    parser.push(b"id: 3\nretry: 10\ndata: {\"partial").unwrap();
    let mut resumed = parser.resume();
    assert_eq!(resumed.last_event_id(), Some("3"));
    assert_eq!(resumed.retry(), Some(Duration::from_millis(10)));
    assert_eq!(resumed.push(b"data: ok\n\n"), Ok(vec![ev("ok")]));
}

#[test]
fn id_with_nul_is_ignored() {
    let mut parser = SseDecoder::new();
    parser.push(b"id: a\0b\ndata: x\n\n").unwrap();
    assert_eq!(parser.last_event_id(), None);
}

/// Feeds `chunks` one after another, then ends the stream.
fn events(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(decoder.push(chunk).unwrap());
    }
    out.extend(decoder.finish());
    out
}

#[test]
fn an_unterminated_last_event_is_kept_at_the_end() {
    assert_eq!(events(&[b"data: last".as_slice()]), vec![ev("last")]);
    assert_eq!(events(&[b"data: a\n".as_slice()]), vec![ev("a")]);
    assert_eq!(events(&[b"data: a\r".as_slice()]), vec![ev("a")]);
    assert_eq!(events(&[b": only a comment".as_slice()]), Vec::<SseEvent>::new());
}

#[test]
fn every_byte_its_own_chunk_gives_the_same_events() {
    let whole: &[u8] =
        b"id: 7\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: keep-alive\n\ndata:x\r\rdata: y\n\n";
    let bytes: Vec<&[u8]> = whole.chunks(1).collect();
    assert_eq!(events(&bytes), vec![ev("{\"a\":\n1}"), ev("x"), ev("y")]);
    assert_eq!(events(&[whole]), events(&bytes));
}

#[test]
fn an_event_past_the_bound_is_an_error_not_growth() {
    // Events up to the bound pass, whatever the chunks.
    check("data: 0123456789\n\n", &[ev("0123456789")]);
    let mut decoder = SseDecoder::with_max(16);
    assert_eq!(decoder.push(b"data: 0123456789\n\n"), Ok(vec![ev("0123456789")]));
    // One line without an end, past the bound: an error, and the decoder stays failed.
    assert_eq!(decoder.push(&[b'x'; 17]), Err(SseTooLarge { max: 16 }));
    assert_eq!(decoder.push(b"\n\ndata: ok\n\n"), Err(SseTooLarge { max: 16 }));
    assert_eq!(decoder.finish(), None);
    // Many short data lines of one event count together.
    let mut decoder = SseDecoder::with_max(16);
    assert_eq!(decoder.push(b"data: 0123\ndata: 4567\ndata: 89ab\n"), Err(SseTooLarge { max: 16 }));
    // A resumed decoder keeps the bound.
    let resumed = SseDecoder::with_max(16).resume();
    let mut resumed = resumed;
    assert!(resumed.push(&[b'y'; 40]).is_err());
    assert_eq!(SseDecoder::new().resume().push(&[b'z'; 4096]), Ok(vec![]));
}

#[test]
fn events_without_data_are_not_dispatched() {
    assert_eq!(events(&[b": ping\n\nevent: x\n\nretry: 10\n\n".as_slice()]), Vec::<SseEvent>::new());
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    fn decode(chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<String>) {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(decoder.push(chunk).unwrap());
        }
        out.extend(decoder.finish());
        (out, decoder.last_event_id().map(str::to_owned))
    }

    /// Text made of SSE's own pieces, so the properties meet real fields, not only noise.
    fn sse_text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"id: ".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"retry: ".to_vec()),
            Just(b": ".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            "[a-z0-9{}\":]{0,6}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..4),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// Any bytes: decoding never panics, and where the input is cut makes no difference.
        #[test]
        fn any_split_of_any_input_decodes_alike(input in prop::collection::vec(any::<u8>(), 0..600), cut in any::<prop::sample::Index>()) {
            let at = cut.index(input.len() + 1);
            let (a, b) = input.split_at(at);
            prop_assert_eq!(decode(&[a, b]), decode(&[&input]));
        }

        /// SSE-shaped input: the same, cut anywhere twice, and no dispatched event's
        /// data holds a line break that was not a `data` line join.
        #[test]
        fn sse_shaped_input_decodes_alike_in_any_chunks(input in sse_text(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 2)) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            at.sort_unstable();
            let chunks = [&input[..at[0]], &input[at[0]..at[1]], &input[at[1]..]];
            let (whole, id) = decode(&[&input]);
            prop_assert_eq!(decode(&chunks), (whole.clone(), id));
            for event in whole {
                prop_assert!(!event.data.contains('\r'));
                prop_assert!(!event.event.contains(['\r', '\n']));
            }
        }
    }
}
