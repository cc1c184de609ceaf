//! Per-principal limits, shared by the fleet through the store: a principal's live
//! sessions (its least recently used one makes room for a new one), its request rate (a
//! token bucket; 429 with `Retry-After`), and the size of what a session keeps of the
//! client (`credentials`, `client`). In auth mode `none` every caller is the one
//! principal `anonymous`, so the per-principal quota and rate do not apply there (the
//! size bounds do).

use serde_json::Value;

use super::{Gateway, GatewayError};
use crate::config::AuthMode;
use crate::session::{SessionId, SessionRecord, now_ms};
use crate::store::Rate;
use crate::telemetry::events::{Emit, Refusal, SessionEvicted};

/// Counts the bytes of a serialization without keeping them.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value` serialized as compact JSON.
fn json_len(value: &Value) -> usize {
    let mut count = ByteCount(0);
    // Writing to a counter cannot fail; a failure would only under-count.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl Gateway {
    /// Whether the per-principal quota and rate apply: not when every caller is `anonymous`.
    fn per_principal(&self) -> bool {
        self.config.auth_mode() != AuthMode::None
    }

    /// Refuses `credentials` or `client` over their limits, before anything else is done
    /// with them (a credentials check, a seal, a store write).
    pub(super) fn check_sizes(&self, credentials: &Value, client: &Value) -> Result<(), GatewayError> {
        let limits = &self.config.limits;
        if json_len(credentials) > limits.max_credentials_bytes {
            Refusal::CredentialsTooLarge.emit(&self.metrics);
            return Err(GatewayError::CredentialsTooLarge(limits.max_credentials_bytes));
        }
        if json_len(client) > limits.max_client_bytes {
            Refusal::ClientTooLarge.emit(&self.metrics);
            return Err(GatewayError::ClientTooLarge(limits.max_client_bytes));
        }
        Ok(())
    }

    /// Takes one request of `principal`'s rate (`None`: not known yet, nothing to do).
    pub(super) async fn check_rate_of(&self, principal: Option<&str>) -> Result<(), GatewayError> {
        let limits = &self.config.limits;
        let Some(principal) = principal.filter(|_| limits.requests_per_sec > 0 && self.per_principal())
        else {
            return Ok(());
        };
        match self.store.take_token(principal, now_ms(), limits.requests_per_sec, limits.burst).await? {
            Rate::Allowed => Ok(()),
            Rate::Limited(wait) => {
                Refusal::RateLimited.emit(&self.metrics);
                let secs = u32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
                Err(GatewayError::RateLimited(secs))
            }
        }
    }

    /// Takes one request of the rate of `record`'s principal.
    pub(super) async fn check_rate(&self, record: &SessionRecord) -> Result<(), GatewayError> {
        self.check_rate_of(Some(&record.principal)).await
    }

    /// Stores a new session within its principal's quota; the sessions ended to make room
    /// are counted, and their warm children go on every worker.
    pub(super) async fn admit(&self, id: &SessionId, record: &SessionRecord) -> Result<(), GatewayError> {
        let quota = if self.per_principal() { self.config.limits.sessions_per_principal } else { 0 };
        let Some(admitted) = self.store.admit(id, record, self.config.idle_ttl(), quota).await? else {
            Refusal::SessionQuota.emit(&self.metrics);
            return Err(GatewayError::SessionQuota(quota));
        };
        SessionEvicted::PrincipalQuota(admitted.evicted.len() as u64).emit(&self.metrics);
        SessionEvicted::Lru(admitted.lru_evicted as u64).emit(&self.metrics);
        for victim in &admitted.evicted {
            self.forget_everywhere(victim).await;
        }
        Ok(())
    }
}
