//! End-to-end scenarios: real `redis-server`, real `switchboard serve` processes,
//! real MCP servers, all on loopback and started by the tests themselves.

// A panic in a test is a failed assertion, not a crash on outside input.
#![allow(clippy::unwrap_used)]

mod core;
mod mcp;
mod ops;
mod results;
mod support;
mod topologies;
mod warm;
