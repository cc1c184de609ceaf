//! Abuse findings: buffers.
