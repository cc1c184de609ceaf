//! PURE: an incremental Server-Sent Events parser, following the WHATWG
//! "event stream interpretation" rules the MCP client side needs: `data` lines
//! joined by `\n`, `id` remembered across events (the `Last-Event-ID` to resume
//! with), `retry` in milliseconds, comments ignored, any of CRLF / LF / CR as a
//! line end (also split across chunks). Input arrives as arbitrary byte chunks.

use std::time::Duration;

#[cfg(test)]
mod tests;

/// One dispatched event. `data` may be empty (a "priming" event that only
/// carries an id); callers skip those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event` field; `message` when absent.
    pub(crate) event: String,
    /// The `data` lines joined by `\n`.
    pub(crate) data: String,
}

/// Parser state for one logical stream; `last_event_id` and `retry` survive a
/// reconnection via [`SseParser::resume`].
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    skip_lf: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_event_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A parser for a new connection that resumes this stream: keeps the last
    /// event id and the retry delay, drops any partial line or event.
    pub(crate) fn resume(&self) -> Self {
        Self { last_event_id: self.last_event_id.clone(), retry: self.retry, ..Self::default() }
    }

    /// The id of the last event seen (what `Last-Event-ID` should carry).
    pub(crate) fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The reconnection delay the server asked for, if any.
    pub(crate) fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
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
                _ => self.line.push(byte),
            }
        }
        events
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
