//! Abuse findings: secrets.
