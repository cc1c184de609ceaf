//! Newline-delimited JSON-RPC framing with an explicit maximum line length, in two
//! flavours with the same rules: [`read_message`] (blocking, std I/O) for the project's
//! own stdio MCP servers (the demo server, the conformance fixture), and
//! [`read_message_async`] (over tokio's `AsyncBufRead`, no runtime needed here) for the
//! bridge's stdin.
//!
//! The rules: a line ends at `\n` (a `\r` before it is dropped); the last line may lack
//! its newline; a line longer than `max` is skipped up to its newline and reported as
//! [`Frame::TooLong`], never buffered beyond `max + 1` bytes.
//!
//! The gateway's reader of its children's stdout (`upstream/stdio.rs`) is stricter on
//! purpose and keeps its own: an oversized line fails at once (the child is taken down),
//! and an unterminated last line counts as end of output.

use std::io::{self, BufRead, Read, Write};

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

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
    let read = input.by_ref().take(read_limit(max)).read_until(b'\n', buf)?;
    if let Some(frame) = first_read(buf, read, max) {
        return Ok(frame);
    }
    loop {
        let (found, used) = newline_in(input.fill_buf()?);
        input.consume(used);
        if found || used == 0 {
            return Ok(Frame::TooLong);
        }
    }
}

/// [`read_message`] over an async reader: the same rules, the same [`Frame`]s. Not
/// cancel-safe within a line: call it from one task, not in a `select!` arm.
pub async fn read_message_async<R>(input: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Frame>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    let read = (&mut *input).take(read_limit(max)).read_until(b'\n', buf).await?;
    if let Some(frame) = first_read(buf, read, max) {
        return Ok(frame);
    }
    loop {
        let (found, used) = newline_in(input.fill_buf().await?);
        input.consume(used);
        if found || used == 0 {
            return Ok(Frame::TooLong);
        }
    }
}

/// How many bytes the first read of a line may take: one more than `max`, to tell a
/// line of exactly `max` bytes and its newline from a longer one.
fn read_limit(max: usize) -> u64 {
    u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1)
}

/// What the first, bounded read of `read` bytes into `buf` found; `None` when the line
/// is too long (`buf` is then cleared and the rest of the line must be skipped).
fn first_read(buf: &mut Vec<u8>, read: usize, max: usize) -> Option<Frame> {
    if read == 0 {
        return Some(Frame::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Some(Frame::Message);
    }
    if buf.len() <= max {
        return Some(Frame::Message); // final line without a newline
    }
    buf.clear();
    None
}

/// Whether `available` holds a newline, and how many bytes to consume to skip to just
/// past it (all of them when there is none; 0 only at end of input).
fn newline_in(available: &[u8]) -> (bool, usize) {
    match available.iter().position(|&b| b == b'\n') {
        Some(newline) => (true, newline + 1),
        None => (false, available.len()),
    }
}

/// Writes one message as a single line and flushes it.
pub fn send(output: &mut impl Write, message: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *output, message)?;
    output.write_all(b"\n")?;
    output.flush()
}

#[cfg(test)]
mod tests;
