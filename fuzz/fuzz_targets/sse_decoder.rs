//! The SSE decoder on any bytes cut into any chunks: no panic; the events, the last
//! event id and the retry delay do not depend on where the chunks were cut (a line end
//! split across chunks, CR LF included, is one line end); no field carries a line end;
//! the id never holds NUL; a resumed decoder keeps the id and the delay.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::sse::{SseDecoder, SseEvent};

/// Decodes `body` fed in chunks whose lengths cycle through `cuts` (each 1..=16).
fn decode(body: &[u8], cuts: &[u8]) -> (SseDecoder, Vec<SseEvent>) {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    let mut rest = body;
    let mut lengths = cuts.iter().map(|&c| usize::from(c % 16) + 1).cycle();
    while !rest.is_empty() {
        let len = lengths.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        events.extend(decoder.push(chunk));
        rest = tail;
    }
    events.extend(decoder.finish());
    (decoder, events)
}

fuzz_target!(|data: &[u8]| {
    // The first 4 bytes choose the cuts; the rest is the stream.
    let (cuts, body) = data.split_at(data.len().min(4));

    let (whole, expected) = decode(body, &[]); // cuts empty: one chunk
    let (chunked, events) = decode(body, cuts);
    assert_eq!(events, expected);
    assert_eq!(chunked.last_event_id(), whole.last_event_id());
    assert_eq!(chunked.retry(), whole.retry());

    let mut one_by_one = SseDecoder::new();
    let mut singles: Vec<SseEvent> =
        body.iter().flat_map(|b| one_by_one.push(std::slice::from_ref(b))).collect();
    singles.extend(one_by_one.finish());
    assert_eq!(singles, expected);

    for event in &expected {
        assert!(!event.event.contains(['\r', '\n']), "{event:?}");
        assert!(!event.data.contains('\r'), "{event:?}");
    }
    if let Some(id) = whole.last_event_id() {
        assert!(!id.contains(['\0', '\r', '\n']), "{id:?}");
    }
    let resumed = whole.resume();
    assert_eq!(resumed.last_event_id(), whole.last_event_id());
    assert_eq!(resumed.retry(), whole.retry());
});
