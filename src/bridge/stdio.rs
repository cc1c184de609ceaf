//! The host side's bytes ↔ lines: a line reader with an explicit maximum (an
//! oversized line is reported and skipped, never buffered without bound) and the
//! single task that owns stdout, so concurrent responders never interleave bytes.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// What the next read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// One line without its line end (a final line without newline included).
    Message(Vec<u8>),
    /// A line longer than the maximum; its bytes were discarded.
    TooLong,
    /// stdin is closed.
    Eof,
}

/// Newline-delimited reader with a maximum line length.
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        Self { inner: BufReader::with_capacity(64 * 1024, inner), max }
    }

    /// Reads the next line. Cancel-safe only between lines: call it from one task.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => Line::TooLong,
                    (false, true) => Line::Eof,
                    (false, false) => Line::Message(trim_cr(line)),
                });
            }
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if line.len() + chunk.len() > self.max {
                    too_long = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            self.inner.consume(used);
            if done {
                return Ok(if too_long { Line::TooLong } else { Line::Message(trim_cr(line)) });
            }
        }
    }
}

fn trim_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// Where responders put finished lines; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<String>,
}

impl Outbox {
    /// An outbox whose messages go nowhere (for exchanges that relay nothing).
    pub(crate) fn closed() -> Self {
        let (tx, _) = mpsc::channel(1);
        Self { tx }
    }

    /// Queues one message (must already be a single line). A closed stdout is
    /// not an error here: the writer task reports it once.
    pub(crate) async fn send(&self, line: String) {
        debug_assert!(!line.contains('\n'));
        if self.tx.send(line).await.is_err() {
            tracing::debug!("stdout is closed; dropping a message");
        }
    }
}

/// Starts the writer: returns the outbox and the task's handle, which ends when
/// every `Outbox` clone is dropped (after flushing) or on the first write error.
pub(crate) fn spawn_writer<W>(mut stdout: W) -> (Outbox, tokio::task::JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<String>(256);
    let task = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            // Flush when nothing else is queued, so bursts cost one flush.
            if rx.is_empty() {
                stdout.flush().await?;
            }
        }
        stdout.flush().await?;
        stdout.shutdown().await
    });
    (Outbox { tx }, task)
}
