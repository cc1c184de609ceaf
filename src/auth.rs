//! Credential validation for `/init` and `initialize` on `/mcp`: `static` tokens
//! (constant-time comparison), an `http` check against the external API, or `none`.
//!
//! Returns who the credentials belong to (the principal) and never logs them. A principal
//! derived from a secret (a token, credentials) is a keyed MAC of it (see
//! [`crate::crypto::MacKey`]): equal on every worker sharing the secret key, and of no use to
//! a dictionary without that key.

use std::time::Duration;

use crate::config::{AuthMode, Config};
use crate::crypto::MacKey;

/// Why credentials were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Nothing to check: no credentials, an empty object, or no `token` where one is needed.
    #[error(
        "no credentials: send a token (POST /init: {{\"credentials\": {{\"token\": \"...\"}}}}; \
         /mcp: the header `Authorization: Bearer <token>`)"
    )]
    Missing,
    #[error("credentials must be a JSON object{0}")]
    Malformed(&'static str),
    #[error("the credentials were refused")]
    Invalid,
    #[error("the credentials service failed: {0}")]
    Unavailable(String),
}

/// Accepted credentials.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who they belong to: safe to store and show, never a secret.
    pub principal: String,
    /// What the credentials service said about them (`http` mode), else null.
    pub identity: serde_json::Value,
}

/// Checks credentials by the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    /// BLAKE3 hashes of the accepted tokens: compared in constant time, never kept in clear.
    token_hashes: Vec<blake3::Hash>,
    http: Option<(reqwest::Client, String)>,
    /// Keys the principals derived from secrets.
    mac: MacKey,
}

impl Authenticator {
    pub fn new(config: &Config, mac: MacKey) -> Result<Self, AuthError> {
        let mode = config.auth_mode();
        let token_hashes = config.auth.static_tokens.iter().map(|t| blake3::hash(t.as_bytes())).collect();
        let http = match (mode, &config.auth.url) {
            (AuthMode::Http, Some(url)) => {
                let client = reqwest::Client::builder()
                    .timeout(config.auth.timeout)
                    .connect_timeout(config.auth.timeout.min(Duration::from_secs(5)))
                    .build()
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                Some((client, url.clone()))
            }
            _ => None,
        };
        Ok(Self { mode, token_hashes, http, mac })
    }

    /// Validates `credentials` (a JSON object).
    pub async fn verify(&self, credentials: &serde_json::Value) -> Result<Verified, AuthError> {
        let empty = credentials.as_object().is_some_and(|o| o.is_empty());
        if credentials.is_null() || empty {
            if self.mode != AuthMode::None {
                return Err(AuthError::Missing);
            }
        } else if !credentials.is_object() {
            return Err(AuthError::Malformed(""));
        }
        match self.mode {
            AuthMode::None => {
                Ok(Verified { principal: "anonymous".into(), identity: serde_json::Value::Null })
            }
            AuthMode::Static => {
                let Some(token) = credentials.get("token") else {
                    return Err(AuthError::Missing);
                };
                let Some(token) = token.as_str() else {
                    return Err(AuthError::Malformed(" with a string field `token`"));
                };
                let hash = blake3::hash(token.as_bytes());
                // blake3::Hash equality is constant-time; every candidate is compared.
                let matched = self.token_hashes.iter().fold(false, |acc, h| acc | (*h == hash));
                if matched {
                    let principal = self.principal("token", token.as_bytes());
                    Ok(Verified { principal, identity: serde_json::Value::Null })
                } else {
                    Err(AuthError::Invalid)
                }
            }
            AuthMode::Http => self.verify_http(credentials).await,
        }
    }

    /// The principal of credentials presented on a request, when it can be told without a
    /// call out (`static`: a configured token; `none`): a request's rate limit then runs
    /// alongside its session's load. `None` in `http` mode or for a token not configured.
    pub fn known_principal(&self, token: Option<&str>) -> Option<String> {
        match self.mode {
            AuthMode::None => Some("anonymous".into()),
            AuthMode::Static => {
                let token = token?;
                let hash = blake3::hash(token.as_bytes());
                let matched = self.token_hashes.iter().fold(false, |acc, h| acc | (*h == hash));
                matched.then(|| self.principal("token", token.as_bytes()))
            }
            AuthMode::Http => None,
        }
    }

    async fn verify_http(&self, credentials: &serde_json::Value) -> Result<Verified, AuthError> {
        let Some((client, url)) = &self.http else {
            return Err(AuthError::Unavailable("no auth URL configured".into()));
        };
        let response = client.post(url).json(credentials).send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "unreachable" };
            AuthError::Unavailable(what.into())
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(AuthError::Invalid);
        }
        if !status.is_success() {
            return Err(AuthError::Unavailable(format!("answered HTTP {}", status.as_u16())));
        }
        let body = response.bytes().await.map_err(|_| AuthError::Unavailable("response cut short".into()))?;
        let identity: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|_| AuthError::Unavailable("answered with invalid JSON".into()))?
        };
        let named = ["sub", "id", "user_id", "user", "email"].iter().find_map(|k| {
            identity
                .get(k)
                .and_then(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|n| n.to_string())))
        });
        let principal = match named {
            Some(name) => format!("user:{name}"),
            None => self.principal("creds", credentials.to_string().as_bytes()),
        };
        Ok(Verified { principal, identity })
    }

    /// A stable, non-secret name for a secret: `kind:` and 128 bits of its keyed MAC.
    fn principal(&self, kind: &str, secret: &[u8]) -> String {
        format!("{kind}:{}", &self.mac.tag(secret).to_hex()[..32])
    }
}
