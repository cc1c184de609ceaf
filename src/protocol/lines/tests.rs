use std::io::Cursor;

use serde_json::json;

use super::*;

/// Every frame of `input` read with the blocking framer, lines as text.
fn frames(input: &[u8], max: usize) -> Vec<(Frame, Vec<u8>)> {
    let mut reader = Cursor::new(input);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match read_message(&mut reader, &mut buf, max) {
            Ok(Frame::End) | Err(_) => return out,
            Ok(frame) => out.push((frame, buf.clone())),
        }
    }
}

/// The same with the async framer.
fn frames_async(input: &[u8], max: usize) -> Vec<(Frame, Vec<u8>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    runtime.block_on(async {
        // A small buffer, so lines cross buffer boundaries.
        let mut reader = tokio::io::BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_message_async(&mut reader, &mut buf, max).await {
                Ok(Frame::End) | Err(_) => return out,
                Ok(frame) => out.push((frame, buf.clone())),
            }
        }
    })
}

fn message(text: &str) -> (Frame, Vec<u8>) {
    (Frame::Message, text.as_bytes().to_vec())
}

fn too_long() -> (Frame, Vec<u8>) {
    (Frame::TooLong, Vec::new())
}

#[test]
fn lines_end_at_newlines_with_an_optional_carriage_return() {
    let input = b"a\r\nbb\n\ncc";
    let expected = vec![message("a"), message("bb"), message(""), message("cc")];
    assert_eq!(frames(input, 10), expected);
    assert_eq!(frames_async(input, 10), expected);
}

#[test]
fn an_oversized_line_is_skipped_and_reported_once() {
    let input = b"0123456789\n0123456789x\nok\n0123456789xyz";
    let expected = vec![message("0123456789"), too_long(), message("ok"), too_long()];
    assert_eq!(frames(input, 10), expected);
    assert_eq!(frames_async(input, 10), expected);
}

#[test]
fn send_writes_one_flushed_line() {
    let mut out = Vec::new();
    send(&mut out, &json!({"a": "x\ny"})).expect("written");
    assert_eq!(out, b"{\"a\":\"x\\ny\"}\n");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes, any limit: both framers give the same frames, every message fits
        /// the limit and holds no newline, and they never panic.
        #[test]
        fn both_framers_agree_and_never_exceed_the_limit(
            input in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..400),
            max in 0usize..40,
        ) {
            let blocking = frames(&input, max);
            for (frame, line) in &blocking {
                prop_assert!(line.len() <= max, "{line:?}");
                prop_assert!(*frame == Frame::Message || line.is_empty());
                prop_assert!(!line.contains(&b'\n'));
            }
            prop_assert_eq!(frames_async(&input, max), blocking);
        }
    }
}
