//! switchboard: MCP clients to stdio MCP servers through stateless HTTP
//! workers, with every session in Redis.
//!
//! # Layout
//! Modules follow the path of a request; imports only point downward (a module
//! never imports one listed above it, and no two modules import each other).
//!
//! - [`cli`]: the subcommands and their wiring.
//! - [`bench`]: the load generator of `switchboard bench`.
//! - [`bridge`]: the stdio MCP process Claude Desktop launches; relays to a gateway.
//! - [`server`]: inbound HTTP (axum), thin adapters: the legacy routes, `/mcp`,
//!   health, metrics, and the one mapping from errors to statuses and JSON-RPC
//!   errors. The only module that imports axum.
//! - [`gateway`]: the application layer: what a request does (sessions, the
//!   principal check, tool calls through the result cache, the catalogue, routing
//!   of answers and cancellations), with one error type. No axum, no HTTP.
//! - [`auth`]: credential validation at session creation.
//! - [`results`]: tool policies, canonical cache keys, jq filters, size caps (pure).
//! - [`session`]: the domain: ids, records, merge patches. No I/O.
//! - [`store`]: session storage, Redis or embedded. The only module that imports redis.
//! - [`upstream`]: outbound MCP: spawn a server per request in its own process
//!   group, talk newline-delimited JSON-RPC, take it down and reap it.
//! - [`demo`]: the demo analytics MCP server (stand-in for the external API).
//! - [`protocol`]: the one owner of the protocol: JSON-RPC envelope and codes, MCP
//!   versions and headers, SSE decoding, line framing, the stdio-server kit of the demo
//!   server and the conformance fixture (a separate binary, `fixtures/`). Fuzzable.
//! - [`config`], [`crypto`], [`telemetry`]: foundations (`telemetry::events`: typed
//!   events that log and count together).
//!
//! # Platforms
//! `serve` runs on Linux only: [`server`], [`gateway`] and [`upstream`] are compiled only there
//! (process groups, a child subreaper, a parent-death signal and SIGTERM handling are
//! what keep a worker's MCP servers from outliving it). Everything else (`bridge`,
//! `bench`, `demo-server`, `check-config`, `sessions`) builds and runs on Linux,
//! macOS and Windows; elsewhere `serve` refuses with a message saying so.

pub mod auth;
pub mod bench;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod demo;
#[cfg(target_os = "linux")]
pub mod gateway;
pub mod protocol;
pub mod results;
#[cfg(target_os = "linux")]
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
#[cfg(target_os = "linux")]
pub mod upstream;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on purpose
mod layout_tests;
