//! Sealing credentials at rest: XChaCha20-Poly1305 with the session id as
//! associated data, so a sealed value cannot be moved to another session.
//!
//! Format: `v1.<key id>.<base64url(nonce || ciphertext)>`, where the key id is
//! the first 8 hex digits of the BLAKE3 hash of the key: the current key seals,
//! the current and any old keys open (key rotation without a flag day).
//! This module never logs and never formats a key or a plaintext.
//!
//! The current key also yields a [`MacKey`] (BLAKE3 `derive_key`, its own context), so
//! names derived from secrets (principals) are keyed: without the key, a dictionary of
//! guessed tokens cannot be matched against them.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Why a key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("secret key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with a key this worker does not have (key id {0})")]
    UnknownKey(String),
    #[error("sealed value failed authentication")]
    Tampered,
    #[error("the operating system's random source failed")]
    Random,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys of this worker: one that seals, any number that open.
pub struct Sealer {
    current: Key,
    old: Vec<Key>,
    /// Derived from the current key: what [`Sealer::mac_key`] hands out.
    mac: MacKey,
}

/// The `derive_key` context of [`MacKey`]: a key for names, never for sealing.
const MAC_CONTEXT: &str = "switchboard 2026-11-30 principal MAC v1";

/// A keyed BLAKE3 MAC, derived from the secret key: equal on every worker sharing the key.
#[derive(Clone)]
pub struct MacKey(Zeroizing<[u8; 32]>);

impl MacKey {
    fn derive(key: &[u8]) -> Self {
        Self(Zeroizing::new(blake3::derive_key(MAC_CONTEXT, key)))
    }

    /// The MAC of `data` (a `blake3::Hash`: compared in constant time).
    pub fn tag(&self, data: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.0, data)
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("key_id", &self.current.id).finish_non_exhaustive()
    }
}

/// A key as configured: base64.
fn decode(text: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    STANDARD.decode(text.trim()).map(Zeroizing::new).map_err(|_| CryptoError::BadKey)
}

impl Key {
    fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let id = blake3::hash(bytes).to_hex()[..8].to_string();
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { id, cipher })
    }

    fn from_base64(text: &str) -> Result<Self, CryptoError> {
        Self::from_bytes(&decode(text)?)
    }
}

impl Sealer {
    /// Keys from config: the current one (base64) and old ones still accepted for reading.
    pub fn from_config(current: &str, old: &[String]) -> Result<Self, CryptoError> {
        let bytes = decode(current)?;
        Ok(Self {
            current: Key::from_bytes(&bytes)?,
            old: old.iter().map(|k| Key::from_base64(k)).collect::<Result<_, _>>()?,
            mac: MacKey::derive(&bytes),
        })
    }

    /// A fresh random key, for the embedded default where nothing outlives the process.
    pub fn ephemeral() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
        Ok(Self {
            current: Key::from_bytes(bytes.as_ref())?,
            old: Vec::new(),
            mac: MacKey::derive(bytes.as_ref()),
        })
    }

    /// The MAC key derived from the current key (a rotation of the current key changes it).
    pub fn mac_key(&self) -> MacKey {
        self.mac.clone()
    }

    /// Seals `plaintext`, bound to `context` (the session id).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .map_err(|_| CryptoError::Tampered)?;
        let mut blob = Vec::with_capacity(24 + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("v1.{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(blob)))
    }

    /// Opens a value sealed by [`Sealer::seal`] with the current or an old key.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_string()))?;
        let blob = URL_SAFE_NO_PAD.decode(body).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 24 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        key.cipher
            .decrypt(&nonce, Payload { msg: ciphertext, aad: context.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }
}

#[cfg(test)]
mod tests;
