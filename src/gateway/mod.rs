//! The application layer: what a request *does*, whatever transport it came by.
//!
//! Loading a session (and checking that the caller is its principal), creating,
//! patching and ending one, running a tool call through the result cache, building
//! the merged tool catalogue, forwarding any other MCP request, and routing a
//! client's answers and cancellations to the worker that holds the child. Every
//! failure is one [`GatewayError`].
//!
//! The HTTP adapters in `server/` sit above this module (they parse, call, render);
//! the store and upstream sit below. **Invariant:** nothing here imports axum or
//! `http`, and nothing here reads a header: the adapters hand over typed values.

use std::sync::Arc;

use crate::auth::{AuthError, Authenticator};
use crate::config::Config;
use crate::crypto::{CryptoError, Sealer};
use crate::results::Policies;
use crate::session::SessionId;
use crate::store::{Keys, SessionStore};
use crate::telemetry::Metrics;
use crate::upstream::{McpManager, ReplyRouter};

mod calls;
mod catalog;
mod eras;
mod error;
mod limits;
mod mcp;
mod modern;
mod sessions;

pub use calls::ToolCall;
pub use catalog::Catalog;
pub use error::GatewayError;
pub use mcp::{Inflight, Operation};
pub use modern::{InputRequest, ModernCalls, RequestState, RunningCall, Step, input_requests};
pub use sessions::{Bound, Door, Prefetched, Presented, SessionView};

/// Why a worker could not be assembled from its config.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("SWITCHBOARD_SECRET_KEY: {0}")]
    SecretKey(#[source] CryptoError),
    #[error("credentials check: {0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Policy(String),
    #[error("the OS random source failed")]
    Random,
}

/// Everything a request may use, built once at start-up from the config and the store.
pub struct Gateway {
    /// The validated configuration.
    pub config: Config,
    /// Where sessions, cached results and shared lists live.
    pub store: Arc<dyn SessionStore>,
    /// Seals credentials at rest (and opens them for a spawn).
    pub sealer: Sealer,
    /// Checks credentials at session creation.
    pub auth: Authenticator,
    /// Spawns and talks to the MCP servers.
    pub manager: Arc<McpManager>,
    /// The worker's metrics registry, rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Pending server-to-client requests of this worker's children (`/mcp`).
    pub relay: Arc<ReplyRouter>,
    /// `/mcp` requests running here, for `notifications/cancelled` from any worker.
    pub inflight: Inflight,
    /// Names of store keys and channels.
    pub keys: Keys,
    /// Cache policies, filters and size caps per tool.
    pub policies: Policies,
    /// Tool lists of the servers, as last fetched.
    pub catalog: Catalog,
    /// Modern-era calls parked for the client's input, and retries waiting for other workers.
    pub modern: ModernCalls,
}

impl Gateway {
    /// Builds every part from the config: the sealer (a random key when none is set and
    /// sessions stay in this process), the credentials check, the manager of MCP
    /// servers (`worker_env` is the worker's environment, for `inherit_env`), the
    /// compiled tool policies and this worker's id for cross-worker routing.
    pub fn new(
        config: Config,
        store: Arc<dyn SessionStore>,
        metrics: Arc<Metrics>,
        worker_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, StartError> {
        let sealer = match &config.secret_key {
            Some(key) => Sealer::from_config(key, &config.secret_keys_old).map_err(StartError::SecretKey)?,
            None => {
                tracing::warn!(
                    "no SWITCHBOARD_SECRET_KEY: credentials are sealed with a random per-process key"
                );
                Sealer::ephemeral().map_err(StartError::SecretKey)?
            }
        };
        let manager = Arc::new(McpManager::new(&config, worker_env, metrics.clone()));
        manager.remember_eras_in(Arc::new(eras::StoreEras(store.clone())));
        let worker_id =
            SessionId::generate().map_err(|_| StartError::Random)?.as_str()[..10].replace(['-', '_'], "x");
        Ok(Self {
            auth: Authenticator::new(&config, sealer.mac_key())?,
            policies: Policies::from_config(&config).map_err(StartError::Policy)?,
            relay: Arc::new(ReplyRouter::new(worker_id)),
            inflight: Inflight::default(),
            catalog: Catalog::default(),
            modern: ModernCalls::default(),
            keys: Keys::new(&config.key_prefix),
            config,
            store,
            sealer,
            manager,
            metrics,
        })
    }
}
