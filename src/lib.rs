//! switchboard: MCP clients to stdio MCP servers through stateless HTTP
//! workers, with every session in Redis.
//!
//! # Layout
//! Modules follow the path of a request; imports only point downward.
//!
//! - [`bench`]: the load generator of `switchboard bench`.
//! - [`bridge`]: the stdio MCP process Claude Desktop launches; relays to a gateway.
//! - [`server`]: inbound HTTP (axum): the legacy routes, health, metrics, and the
//!   one mapping from errors to statuses. The only module that imports axum.
//! - [`auth`]: credential validation at session creation.
//! - [`session`]: the domain: ids, records, merge patches. No I/O.
//! - [`store`]: session storage, Redis or embedded. The only module that imports redis.
//! - [`upstream`]: outbound MCP: spawn a server per request in its own process
//!   group, talk newline-delimited JSON-RPC, take it down and reap it.
//! - [`conformance`]: a stdio fixture server with the conformance suite's tools (tests only).
//! - [`demo`]: the demo analytics MCP server (stand-in for the external API).
//! - [`results`]: cache policy, canonical cache keys, jq filters, size caps (pure).
//! - [`protocol`]: pure JSON-RPC envelope and MCP constants; fuzzable.
//! - [`config`], [`crypto`], [`telemetry`]: foundations.
//! - [`cli`]: the subcommands and their wiring.
//!
//! # Platforms
//! `serve` runs on Linux only: [`server`] and [`upstream`] are compiled only there
//! (process groups, a child subreaper, a parent-death signal and SIGTERM handling are
//! what keep a worker's MCP servers from outliving it). Everything else (`bridge`,
//! `bench`, `demo-server`, `check-config`, `sessions`) builds and runs on Linux,
//! macOS and Windows; elsewhere `serve` refuses with a message saying so.

pub mod auth;
pub mod bench;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod crypto;
pub mod demo;
pub mod protocol;
pub mod results;
#[cfg(target_os = "linux")]
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
#[cfg(target_os = "linux")]
pub mod upstream;
