//! Abuse findings: quotas.
