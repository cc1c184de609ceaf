//! Abuse findings: connections.
