//! Newline-delimited JSON-RPC over a child's stdio: framing with an explicit
//! maximum line size, and a reader that demultiplexes by id (servers interleave
//! notifications and their own requests with responses). Also the drain of a child's
//! stderr, which keeps at most one line of [`MAX_STDERR_LINE`] bytes whatever it is sent.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::telemetry::Metrics;
use crate::telemetry::events::{Emit, Limit, LimitHit};

/// Most bytes of one stderr line kept (and logged); the rest of a longer line is read and
/// discarded as it streams, never kept.
pub const MAX_STDERR_LINE: usize = 4096;

/// Size of one read from a child's stderr.
const STDERR_CHUNK: usize = 8192;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("the MCP server closed its output")]
    Eof,
    #[error("the MCP server sent a message larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("reading from the MCP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads newline-delimited messages of at most `max` bytes each.
pub struct LineReader<R> {
    reader: BufReader<R>,
    max: usize,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self { reader: BufReader::with_capacity(64 * 1024, inner), max, line: Vec::new() }
    }

    /// The next non-empty line without its terminator. A line over the limit is an error,
    /// never truncated; the reader is unusable afterwards (the child is taken down).
    pub async fn next_line(&mut self) -> Result<&[u8], LineError> {
        loop {
            self.line.clear();
            loop {
                let buf = self.reader.fill_buf().await?;
                if buf.is_empty() {
                    return Err(LineError::Eof);
                }
                let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                if self.line.len() + take > self.max + 1 {
                    return Err(LineError::TooLarge { max: self.max });
                }
                self.line.extend_from_slice(&buf[..take]);
                self.reader.consume(take);
                if done {
                    break;
                }
            }
            while matches!(self.line.last(), Some(b'\n' | b'\r')) {
                self.line.pop();
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(&self.line);
            }
        }
    }
}

/// Writes one message and its newline, then flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(writer: &mut W, message: &str) -> std::io::Result<()> {
    writer.write_all(message.as_bytes()).await?;
    writer.write_all(b"\n").await?;
    writer.flush().await
}

/// What became of a child's stderr once it closed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StderrSummary {
    /// Lines logged (at most the `max_lines` given).
    pub logged: usize,
    /// Lines not logged (past `max_lines`).
    pub dropped: usize,
    /// Lines cut at [`MAX_STDERR_LINE`] bytes.
    pub truncated: usize,
}

/// Reads a child's stderr until it closes, in chunks of a few KiB: the first `max_lines`
/// lines are logged (each cut at [`MAX_STDERR_LINE`] bytes, marked so), the rest counted.
/// Memory stays at one chunk and one cut line, whatever the child writes: 500 MB without a
/// newline is read and discarded as it comes. Each cut line counts in
/// `switchboard_limits_total{limit="stderr_line"}` when `metrics` is given.
pub async fn drain_stderr<R: AsyncRead + Unpin>(
    mut stderr: R,
    label: Arc<str>,
    max_lines: usize,
    metrics: Option<Arc<Metrics>>,
) -> StderrSummary {
    let mut summary = StderrSummary::default();
    let mut chunk = vec![0u8; STDERR_CHUNK];
    let mut line: Vec<u8> = Vec::new();
    // The current line went past the limit: its tail is being discarded.
    let mut cut = false;
    let line_done = |line: &mut Vec<u8>, cut: &mut bool, summary: &mut StderrSummary| {
        if *cut {
            summary.truncated += 1;
            if let Some(metrics) = &metrics {
                LimitHit(Limit::StderrLine).emit(metrics);
            }
        }
        if summary.logged < max_lines {
            summary.logged += 1;
            let text = String::from_utf8_lossy(line);
            let marker = if *cut { " [line truncated]" } else { "" };
            tracing::info!(server = %label, "stderr: {}{marker}", text.trim_end());
        } else {
            summary.dropped += 1;
        }
        line.clear();
        *cut = false;
    };
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in chunk[..n].split_inclusive(|&b| b == b'\n') {
            let (body, ends) = match piece.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (piece, false),
            };
            let room = MAX_STDERR_LINE.saturating_sub(line.len());
            if body.len() > room {
                cut = true;
            }
            line.extend_from_slice(&body[..body.len().min(room)]);
            if ends {
                line_done(&mut line, &mut cut, &mut summary);
            }
        }
    }
    if !line.is_empty() || cut {
        line_done(&mut line, &mut cut, &mut summary);
    }
    if summary.dropped > 0 {
        tracing::info!(server = %label, dropped = summary.dropped, "stderr lines not logged");
    }
    summary
}

#[cfg(test)]
mod tests;
