//! The host side's stdout: the single task that owns it, so concurrent responders
//! never interleave bytes. (Lines are read from stdin with the shared framer,
//! [`crate::protocol::lines::read_message_async`].)

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

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
