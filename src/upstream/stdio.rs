//! Newline-delimited JSON-RPC over a child's stdio: framing with an explicit
//! maximum line size, and a reader that demultiplexes by id (servers interleave
//! notifications and their own requests with responses).

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

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

#[cfg(test)]
mod tests;
