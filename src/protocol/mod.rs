//! Pure protocol code: the JSON-RPC 2.0 envelope and MCP names and versions.
//! No I/O, no tokio, no axum, no redis: everything here can be fuzzed.
//!
//! Payloads the gateway does not interpret stay raw JSON ([`serde_json::value::RawValue`])
//! so unknown fields and newer protocol versions pass through byte for byte.

pub mod jsonrpc;
pub mod lines;

/// The protocol version the gateway offers to the servers it spawns.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// Legacy-era protocol versions the gateway accepts from clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
