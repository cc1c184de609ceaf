//! The store as the fleet's memory of the protocol eras learnt in `auto` mode
//! ([`crate::upstream::era`]): shared values, so the previous release never reads them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::SessionStore;
use crate::upstream::EraMemory;

/// [`EraMemory`] on the session store's shared values.
pub(super) struct StoreEras(pub(super) Arc<dyn SessionStore>);

#[async_trait]
impl EraMemory for StoreEras {
    async fn recall(&self, key: &str) -> Option<String> {
        self.0.get_shared(key).await.ok().flatten()
    }

    async fn remember(&self, key: &str, value: &str, ttl: Duration) {
        if let Err(e) = self.0.put_shared(key, value, ttl).await {
            tracing::warn!(error = %e, "could not share a learnt protocol era");
        }
    }
}
