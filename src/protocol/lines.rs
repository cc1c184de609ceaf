//! Blocking newline-delimited JSON-RPC framing for the project's own stdio MCP servers
//! (the demo server and the conformance fixture): std I/O only, no tokio.

use std::io::{self, BufRead, Read, Write};

use serde_json::Value;

/// What [`read_message`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Input is closed.
    End,
    /// `buf` holds one line, without its line ending.
    Message,
    /// A line exceeded `max` bytes; it was skipped up to its newline.
    TooLong,
}

/// Reads one newline-terminated line of at most `max` bytes (the last may lack its newline) into `buf`.
pub fn read_message(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Frame> {
    buf.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let read = input.by_ref().take(limit).read_until(b'\n', buf)?;
    if read == 0 {
        return Ok(Frame::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Frame::Message);
    }
    if buf.len() <= max {
        return Ok(Frame::Message); // final line without a newline
    }
    buf.clear();
    skip_line(input)?;
    Ok(Frame::TooLong)
}

/// Discards input up to and including the next newline (or to end of file).
fn skip_line(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let (found, used) = {
            let available = input.fill_buf()?;
            if available.is_empty() {
                return Ok(());
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(newline) => (true, newline + 1),
                None => (false, available.len()),
            }
        };
        input.consume(used);
        if found {
            return Ok(());
        }
    }
}

/// Writes one message as a single line and flushes it.
pub fn send(output: &mut impl Write, message: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *output, message)?;
    output.write_all(b"\n")?;
    output.flush()
}
