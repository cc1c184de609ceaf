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
//! - [`demo`]: the demo analytics MCP server (stand-in for the external API).
//! - [`results`]: cache policy, canonical cache keys, jq filters, size caps (pure).
//! - [`protocol`]: the one owner of the protocol: JSON-RPC envelope and codes, MCP
//!   versions and headers, SSE decoding, line framing, the stdio-server kit of the demo
//!   server and the conformance fixture (a separate binary, `fixtures/`).
//! - [`config`], [`crypto`], [`telemetry`]: foundations.
//! - [`cli`]: the subcommands and their wiring.

pub mod auth;
pub mod bench;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod protocol;
pub mod results;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod upstream;
