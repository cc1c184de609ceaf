//! End-to-end scenarios: real `redis-server`, real `switchboard serve` processes,
//! real MCP servers, all on loopback and started by the tests themselves.

// They run `switchboard serve`, which is Linux only (see the crate docs, "Platforms").
#![cfg(target_os = "linux")]
// A panic in a test is a failed assertion, not a crash on outside input.
#![allow(clippy::unwrap_used)]
// The tests start redis-server, nginx, workers and CLIs themselves and stop them by pid.
#![allow(clippy::disallowed_methods)]

mod abuse;
mod cli;
mod core;
mod mcp;
mod modern;
mod modern_back;
mod oauth;
mod ops;
mod results;
mod store_contract;
mod support;
mod topologies;
mod upgrade;
mod warm;
