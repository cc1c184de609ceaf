//! Abuse findings: binding.
