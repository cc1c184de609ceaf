//! The SSE decoder on any bytes cut into any chunks: no panic; the events, the last
//! event id and the retry delay do not depend on where the chunks were cut (a line end
//! split across chunks, CR LF included, is one line end); no field carries a line end;
//! the id never holds NUL; a resumed decoder keeps the id and the delay. Under a small
//! bound, whether the stream fails does not depend on the cuts either, and a stream that
//! does not fail decodes as without the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::sse::{SseDecoder, SseEvent};

/// Decodes `body` fed in chunks whose lengths cycle through `cuts` (each 1..=16), under a
/// bound of `max` bytes per event; `None` for the events when the bound was passed.
fn decode_within(body: &[u8], cuts: &[u8], max: usize) -> (SseDecoder, Option<Vec<SseEvent>>) {
    let mut decoder = SseDecoder::with_max(max);
    let mut events = Vec::new();
    let mut rest = body;
    let mut lengths = cuts.iter().map(|&c| usize::from(c % 16) + 1).cycle();
    while !rest.is_empty() {
        let len = lengths.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        match decoder.push(chunk) {
            Ok(done) => events.extend(done),
            Err(_) => return (decoder, None),
        }
        rest = tail;
    }
    events.extend(decoder.finish());
    (decoder, Some(events))
}

/// [`decode_within`] with the default bound, which no fuzz input reaches.
fn decode(body: &[u8], cuts: &[u8]) -> (SseDecoder, Vec<SseEvent>) {
    let (decoder, events) = decode_within(body, cuts, usize::MAX);
    (decoder, events.unwrap_or_default())
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
        body.iter().flat_map(|b| one_by_one.push(std::slice::from_ref(b)).unwrap_or_default()).collect();
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

    // A small bound (1..=64 bytes, from the first cut byte).
    let max = usize::from(cuts.first().copied().unwrap_or(0) % 64) + 1;
    let (_, bounded) = decode_within(body, &[], max);
    let (_, bounded_chunked) = decode_within(body, cuts, max);
    assert_eq!(bounded, bounded_chunked);
    if let Some(events) = bounded {
        assert_eq!(events, expected);
    }
});
