//! PURE: the one incremental Server-Sent Events decoder (the bridge's MCP client and the
//! bench read `/mcp` answers with it), following the WHATWG "event stream
//! interpretation" rules an MCP client needs: `data` lines joined by `\n`, `id`
//! remembered across events (the `Last-Event-ID` to resume with), `retry` in
//! milliseconds, comments ignored, any of CRLF / LF / CR as a line end (also split
//! across chunks). Input arrives as arbitrary byte chunks.
//!
//! One event is bounded ([`MAX_EVENT_BYTES`] unless the caller sets another bound): its
//! data and the line being read together; past it the decoder fails, for good, rather
//! than grow.
//!
//! Must not: panic on any input, grow past its bound, or interpret `data` (it is handed on
//! as text).

use std::time::Duration;

/// The default bound on one event (its `data` and the line being read): 64 MiB, four
/// times the largest result a gateway passes on by default (`max_message_bytes`).
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// An event (or one line) larger than the decoder's bound; the stream cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event exceeds the {max}-byte limit")]
pub struct SseTooLarge {
    pub max: usize,
}

#[cfg(test)]
mod tests;

/// One dispatched event. `data` may be empty (a "priming" event that only
/// carries an id); callers skip those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; `message` when absent.
    pub event: String,
    /// The `data` lines joined by `\n`.
    pub data: String,
}

/// Decoder state for one logical stream; `last_event_id` and `retry` survive a
/// reconnection via [`SseDecoder::resume`].
#[derive(Debug)]
pub struct SseDecoder {
    /// Most bytes of the event being assembled plus the current line.
    max: usize,
    /// The bound was passed: every further push fails.
    failed: bool,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous byte was `\r`, so a `\n` right after it ends no further line.
    skip_lf: bool,
    /// The `event` field of the event being assembled.
    event: Option<String>,
    /// The `data` lines of the event being assembled, joined by `\n`.
    data: String,
    /// Whether any `data` line was seen for it (an event without data is not dispatched).
    has_data: bool,
    /// The last `id` field seen, which outlives events and reconnections.
    last_event_id: Option<String>,
    /// The last valid `retry` field seen.
    retry: Option<Duration>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_max(MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    /// A decoder bounded at [`MAX_EVENT_BYTES`] per event.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder bounded at `max` bytes per event (its data and the line being read).
    pub fn with_max(max: usize) -> Self {
        Self {
            max,
            failed: false,
            line: Vec::new(),
            skip_lf: false,
            event: None,
            data: String::new(),
            has_data: false,
            last_event_id: None,
            retry: None,
        }
    }

    /// A decoder for a new connection that resumes this stream: keeps the last
    /// event id, the retry delay and the bound, drops any partial line or event.
    pub fn resume(&self) -> Self {
        Self { last_event_id: self.last_event_id.clone(), retry: self.retry, ..Self::with_max(self.max) }
    }

    /// The id of the last event seen (what `Last-Event-ID` should carry).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The reconnection delay the server asked for, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Feeds a chunk; returns the events it completed, or an error once an event (its data
    /// and the line being read) would pass the bound: then this decoder fails for good.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        let mut events = Vec::new();
        if self.failed {
            return Err(SseTooLarge { max: self.max });
        }
        for &byte in chunk {
            if self.skip_lf {
                self.skip_lf = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.skip_lf = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    if self.line.len() + self.data.len() >= self.max {
                        self.failed = true;
                        self.line = Vec::new();
                        self.data = String::new();
                        return Err(SseTooLarge { max: self.max });
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(events)
    }

    /// Ends the stream: an unterminated last line and event are dispatched too
    /// (lenient; a strict client would drop them).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.failed {
            return None;
        }
        let line = std::mem::take(&mut self.line);
        self.skip_lf = false;
        if !line.is_empty() {
            // A non-empty line never dispatches by itself.
            let _ = self.line_done(&line);
        }
        self.dispatch()
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_event_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: event.unwrap_or_else(|| "message".to_owned()),
            data: std::mem::take(&mut self.data),
        })
    }
}
