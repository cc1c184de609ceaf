//! The line framers on any bytes, any line limit and any reader buffer size: no panic,
//! a framed line never exceeds the limit, the blocking and the async framer agree frame
//! for frame, and both match a plain model of the rules (split at `\n`, drop one `\r`
//! before it, a line over the limit is one `TooLong`, the last line may lack its `\n`).
#![no_main]

use std::future::Future;
use std::io::BufReader;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::lines::{Frame, read_message, read_message_async};

type Frames = Vec<(Frame, Vec<u8>)>;

/// Every frame the blocking framer reads from `input`.
fn blocking(input: &[u8], max: usize, capacity: usize) -> Frames {
    let mut reader = BufReader::with_capacity(capacity, input);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    loop {
        match read_message(&mut reader, &mut buf, max).expect("reading a slice never fails") {
            Frame::End => return frames,
            frame => frames.push((frame, buf.clone())),
        }
    }
}

/// Every frame the async framer reads from `input`: a slice is always ready, so each
/// call completes on its first poll and no runtime is needed.
fn non_blocking(input: &[u8], max: usize, capacity: usize) -> Frames {
    let mut reader = tokio::io::BufReader::with_capacity(capacity, input);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut context = Context::from_waker(Waker::noop());
    loop {
        let result = match pin!(read_message_async(&mut reader, &mut buf, max)).poll(&mut context) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("reading a slice never waits"),
        };
        match result.expect("reading a slice never fails") {
            Frame::End => return frames,
            frame => frames.push((frame, buf.clone())),
        }
    }
}

/// The rules, spelled out on the whole input at once.
fn model(input: &[u8], max: usize) -> Frames {
    let mut frames = Vec::new();
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let unterminated = lines.pop().filter(|last| !last.is_empty());
    for line in lines {
        if line.len() > max {
            frames.push((Frame::TooLong, Vec::new()));
        } else {
            frames.push((Frame::Message, line.strip_suffix(b"\r").unwrap_or(line).to_vec()));
        }
    }
    if let Some(last) = unterminated {
        // Without its newline the last line keeps a trailing `\r`.
        if last.len() > max {
            frames.push((Frame::TooLong, Vec::new()));
        } else {
            frames.push((Frame::Message, last.to_vec()));
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: the line limit (0..=63); byte 1: the reader's buffer size (1..=16).
    let [limit, capacity, input @ ..] = data else {
        return;
    };
    let max = usize::from(limit % 64);
    let capacity = usize::from(capacity % 16) + 1;

    let frames = blocking(input, max, capacity);
    for (frame, line) in &frames {
        assert!(line.len() <= max, "a {frame:?} of {} bytes over the limit {max}", line.len());
        if *frame == Frame::TooLong {
            assert!(line.is_empty());
        }
    }
    assert_eq!(non_blocking(input, max, capacity), frames);
    assert_eq!(model(input, max), frames);
});
