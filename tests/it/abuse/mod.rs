//! The abuse table: each finding of an abuse run by an attacker holding one valid token,
//! reproduced against real workers on a real redis-server, asserting the fixed behaviour
//! and that the worker keeps serving afterwards.

mod binding;
mod buffers;
mod connections;
mod processes;
mod quotas;
mod secrets;
