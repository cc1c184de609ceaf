//! Abuse findings: processes.
