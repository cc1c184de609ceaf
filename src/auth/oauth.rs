//! Auth mode `oauth`: the gateway as an OAuth 2.1 resource server (the MCP authorization
//! specification). A bearer access token is accepted when it was issued by `auth.issuer`
//! for this gateway (`auth.audience`, RFC 8707) and is in force:
//!
//! - a JWT is checked here, against the issuer's JSON Web Key Set: found through the issuer's
//!   RFC 8414 or OpenID Connect metadata (or `auth.jwks_url`), kept for `jwks_cache_secs`,
//!   fetched again when a token names a key id not in it (at most once per
//!   `jwks_refetch_min_secs`, one fetch at a time), read with a size bound. Only RS256, ES256
//!   and EdDSA signatures are accepted: never `none`, never an HMAC (whose "secret" would be
//!   the issuer's public key). `iss`, `aud`, `exp` and `sub` are required; `exp` and `nbf`
//!   allow `leeway_secs` of clock skew.
//! - any other token is sent to the RFC 7662 introspection endpoint, if one is configured;
//!   an active answer is kept until the token expires (at most `introspection_cache_secs`),
//!   in a bounded map keyed by a hash of the token.
//!
//! The principal is the token's (`iss`, `sub`); its claims become the session's identity.
//! Nothing here logs a token.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, Verified};
use crate::config::Config;

/// The signature algorithms accepted: asymmetric only.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Longest access token looked at; longer ones are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest metadata document or key set read from the issuer.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Most keys kept from one key set.
const MAX_KEYS: usize = 64;

/// Longest `iss` or `sub` accepted (they form the principal).
const MAX_NAME_BYTES: usize = 512;

/// A key of the issuer's key set.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK pins (`alg`), if it does.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// What the held keys say about a token.
enum Lookup {
    Valid(Map<String, Value>),
    /// A key fits but the token fails (signature, claims): the last failure.
    Refused(jsonwebtoken::errors::Error),
    /// No held key fits; the key set's generation.
    NoKey(u64),
}

/// The keys in use and when they were fetched.
#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    fetched: Option<Instant>,
    /// Bumped on every successful fetch, so waiters on a fetch in progress see it happened.
    generation: u64,
}

/// Fetches in progress are serialised by this; it remembers when the last one was tried
/// and the key set's URL once discovered.
#[derive(Default)]
struct Fetcher {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

/// An introspection answer (its claims) and how long it is trusted.
type Introspected = (Map<String, Value>, Instant);

/// The RFC 7662 endpoint and what it answered.
struct Introspection {
    url: String,
    client_id: String,
    client_secret: String,
    /// blake3(token) → (claims, trusted until).
    cache: Mutex<HashMap<blake3::Hash, Introspected>>,
    max_entries: usize,
    max_age: Duration,
}

/// Validates bearer access tokens for one issuer and one audience.
pub struct OAuthValidator {
    issuer: String,
    audience: String,
    required_scopes: Vec<String>,
    leeway: Duration,
    http: reqwest::Client,
    jwks_url: Option<String>,
    keys: RwLock<KeySet>,
    fetcher: tokio::sync::Mutex<Fetcher>,
    jwks_cache: Duration,
    refetch_min: Duration,
    introspection: Option<Introspection>,
}

impl OAuthValidator {
    /// From the `auth` section (validated: `issuer` and `audience` are set).
    pub fn new(config: &Config) -> Result<Self, AuthError> {
        let auth = &config.auth;
        let http = reqwest::Client::builder()
            .timeout(auth.timeout)
            .connect_timeout(auth.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let (Some(issuer), Some(audience)) = (&auth.issuer, &auth.audience) else {
            return Err(AuthError::Unavailable("auth mode oauth needs auth.issuer and auth.audience".into()));
        };
        let introspection = match (&auth.introspection_url, &auth.introspection_client_id) {
            (Some(url), Some(client_id)) => Some(Introspection {
                url: url.clone(),
                client_id: client_id.clone(),
                client_secret: auth.introspection_client_secret.clone().unwrap_or_default(),
                cache: Mutex::new(HashMap::new()),
                max_entries: auth.introspection_cache_entries.max(1),
                max_age: auth.introspection_cache,
            }),
            _ => None,
        };
        Ok(Self {
            issuer: issuer.clone(),
            audience: audience.clone(),
            required_scopes: auth.required_scopes.clone(),
            leeway: auth.leeway,
            http,
            jwks_url: auth.jwks_url.clone(),
            keys: RwLock::new(KeySet::default()),
            fetcher: tokio::sync::Mutex::new(Fetcher::default()),
            jwks_cache: auth.jwks_cache,
            refetch_min: auth.jwks_refetch_min,
            introspection,
        })
    }

    /// The token's principal and claims, if it is in force for this gateway and carries
    /// `auth.required_scopes`.
    pub async fn validate(&self, token: &str) -> Result<Verified, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::InvalidToken("the access token is too long".into()));
        }
        let claims = match jwt_algorithm(token) {
            Some(alg) => self.validate_jwt(token, &alg).await?,
            None if self.introspection.is_some() => self.introspect(token).await?,
            None => {
                return Err(AuthError::InvalidToken(
                    "the access token is not a JWT (and no introspection endpoint is configured)".into(),
                ));
            }
        };
        let missing = missing_scopes(&claims, self.required_scopes.iter());
        if !missing.is_empty() {
            return Err(AuthError::InsufficientScope { scope: self.required_scopes.join(" ") });
        }
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let principal = format!("oauth:{}#{sub}", self.issuer);
        Ok(Verified { principal, identity: Value::Object(claims) })
    }

    async fn validate_jwt(&self, token: &str, alg: &str) -> Result<Map<String, Value>, AuthError> {
        let invalid = |m: &str| AuthError::InvalidToken(m.to_string());
        let Some(alg) = ALGORITHMS.into_iter().find(|a| format!("{a:?}") == alg) else {
            return Err(AuthError::InvalidToken(format!(
                "tokens signed with `{}` are not accepted (RS256, ES256, EdDSA only)",
                printable(alg)
            )));
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("the JWT header is malformed"))?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let kid = header.kid.as_deref();
        let stale = self.keys().fetched.is_none_or(|t| t.elapsed() >= self.jwks_cache);
        if stale {
            let seen = self.keys().generation;
            if let Err(e) = self.refresh(seen).await {
                if self.keys().keys.is_empty() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "cannot fetch the issuer's keys again; using the ones held");
            }
        }
        let seen = match self.try_keys(token, kid, alg, &validation) {
            Lookup::Valid(claims) => return check_names(claims),
            Lookup::Refused(e) => return Err(AuthError::InvalidToken(describe(&e))),
            Lookup::NoKey(generation) => generation,
        };
        // A key id not in the set: the issuer may have rotated its keys (rate-limited).
        let unknown = || invalid("the JWT is signed by a key the issuer does not publish");
        if !self.refresh(seen).await? {
            return Err(unknown());
        }
        match self.try_keys(token, kid, alg, &validation) {
            Lookup::Valid(claims) => check_names(claims),
            Lookup::Refused(e) => Err(AuthError::InvalidToken(describe(&e))),
            Lookup::NoKey(_) => Err(unknown()),
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Verifies the token with the held keys that fit its key id and algorithm.
    fn try_keys(&self, token: &str, kid: Option<&str>, alg: Algorithm, validation: &Validation) -> Lookup {
        let keys = self.keys();
        let mut refused = None;
        for key in keys.keys.iter().filter(|k| k.matches(kid, alg)) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Lookup::Valid(data.claims),
                Err(e) => refused = Some(e),
            }
        }
        match refused {
            Some(e) => Lookup::Refused(e),
            None => Lookup::NoKey(keys.generation),
        }
    }

    /// Fetches the key set again, unless another task did since generation `seen` (then
    /// `Ok(true)` at once) or the last attempt was under `jwks_refetch_min_secs` ago (then
    /// `Ok(false)`). One fetch at a time.
    async fn refresh(&self, seen: u64) -> Result<bool, AuthError> {
        let mut fetcher = self.fetcher.lock().await;
        if self.keys().generation != seen {
            return Ok(true);
        }
        if fetcher.last_attempt.is_some_and(|t| t.elapsed() < self.refetch_min) {
            return Ok(false);
        }
        fetcher.last_attempt = Some(Instant::now());
        let url = match (&self.jwks_url, &fetcher.jwks_uri) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover_jwks_uri().await?;
                fetcher.jwks_uri = Some(url.clone());
                url
            }
        };
        let document = self.get_json(&url).await?;
        let keys = parse_key_set(&document);
        tracing::info!(keys = keys.len(), "fetched the issuer's signing keys");
        let mut set = self.keys.write().unwrap_or_else(|p| p.into_inner());
        set.keys = keys;
        set.fetched = Some(Instant::now());
        set.generation += 1;
        Ok(true)
    }

    /// The issuer's `jwks_uri`, from its RFC 8414 metadata or its OpenID Connect discovery
    /// document (whose `issuer` must be the configured one).
    async fn discover_jwks_uri(&self) -> Result<String, AuthError> {
        let mut last = AuthError::Unavailable("the issuer publishes no metadata".into());
        for url in metadata_urls(&self.issuer) {
            let document = match self.get_json(&url).await {
                Ok(d) => d,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if document.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                last = AuthError::Unavailable("the issuer's metadata names another issuer".into());
                continue;
            }
            if let Some(uri) = document.get("jwks_uri").and_then(Value::as_str) {
                return Ok(uri.to_string());
            }
            last = AuthError::Unavailable("the issuer's metadata has no jwks_uri".into());
        }
        Err(last)
    }

    /// GETs a JSON document, reading at most [`MAX_DOCUMENT_BYTES`].
    async fn get_json(&self, url: &str) -> Result<Value, AuthError> {
        let request = self.http.get(url).header(reqwest::header::ACCEPT, "application/json");
        read_json(request).await
    }

    /// Asks the introspection endpoint (or its cached answer) about an opaque token.
    async fn introspect(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let Some(endpoint) = &self.introspection else {
            return Err(AuthError::InvalidToken("no introspection endpoint is configured".into()));
        };
        let hash = blake3::hash(token.as_bytes());
        if let Some((claims, until)) = endpoint.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&hash)
            && *until > Instant::now()
        {
            return Ok(claims.clone());
        }
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let request = self
            .http
            .post(&endpoint.url)
            .basic_auth(form_encode(&endpoint.client_id), Some(form_encode(&endpoint.client_secret)))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let answer = read_json(request).await?;
        let Value::Object(claims) = answer else {
            return Err(AuthError::Unavailable("the introspection endpoint answered with no object".into()));
        };
        if claims.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(AuthError::InvalidToken("the access token is not active".into()));
        }
        let now = unix_now();
        let exp = claims.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|exp| exp.saturating_add(self.leeway.as_secs()) < now) {
            return Err(AuthError::InvalidToken("the access token has expired".into()));
        }
        if claims.get("iss").and_then(Value::as_str).is_some_and(|iss| iss != self.issuer) {
            return Err(AuthError::InvalidToken("the access token was issued by another issuer".into()));
        }
        if !audience_matches(claims.get("aud"), &self.audience) {
            return Err(AuthError::InvalidToken(
                "the access token was not issued for this resource (aud)".into(),
            ));
        }
        let mut claims = claims;
        if !claims.contains_key("sub")
            && let Some(client) = claims.get("client_id").cloned()
        {
            claims.insert("sub".into(), client);
        }
        claims.entry("iss").or_insert_with(|| Value::String(self.issuer.clone()));
        let claims = check_names(claims)?;
        let lifetime = exp.map_or(endpoint.max_age, |exp| Duration::from_secs(exp.saturating_sub(now)));
        let until = Instant::now() + lifetime.min(endpoint.max_age);
        let mut cache = endpoint.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= endpoint.max_entries {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= endpoint.max_entries {
                // Still full of live entries: the half closest to expiry goes.
                let mut ends: Vec<Instant> = cache.values().map(|(_, u)| *u).collect();
                ends.sort_unstable();
                let cut = ends[ends.len() / 2];
                cache.retain(|_, (_, until)| *until > cut);
            }
        }
        cache.insert(hash, (claims.clone(), until));
        Ok(claims)
    }
}

impl Key {
    /// Whether this key may have signed a token with this key id and algorithm.
    fn matches(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let family = self.key.family();
        let family_ok = alg.family() == family;
        let alg_ok = self.alg.is_none_or(|a| a == alg);
        let kid_ok = match (kid, &self.kid) {
            (Some(wanted), Some(have)) => wanted == have,
            (Some(_), None) => true,
            (None, _) => true,
        };
        family_ok && alg_ok && kid_ok
    }
}

/// The `alg` of a token shaped like a JWS (three base64url parts whose first is a JSON
/// object with a string `alg`); `None` for anything else (an opaque token).
fn jwt_algorithm(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(String::from)
}

/// `iss` and `sub` present, strings, and of sane length (they form the principal).
fn check_names(claims: Map<String, Value>) -> Result<Map<String, Value>, AuthError> {
    for name in ["iss", "sub"] {
        match claims.get(name).and_then(Value::as_str) {
            Some(v) if !v.is_empty() && v.len() <= MAX_NAME_BYTES => {}
            _ => return Err(AuthError::InvalidToken(format!("the access token has no usable `{name}`"))),
        }
    }
    Ok(claims)
}

/// What a validation failure tells the client (never the token).
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the access token has expired".into(),
        ErrorKind::ImmatureSignature => "the access token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the access token was not issued for this resource (aud)".into(),
        ErrorKind::InvalidIssuer => "the access token was issued by another issuer (iss)".into(),
        ErrorKind::InvalidSignature => "the access token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the access token has no `{claim}` claim"),
        ErrorKind::InvalidAlgorithm => "the access token's algorithm does not fit its key".into(),
        _ => "the access token is malformed".into(),
    }
}

/// The keys of a JWK Set that can verify an accepted algorithm (`oct` keys, keys for
/// encryption only and unreadable ones are left out), at most [`MAX_KEYS`].
fn parse_key_set(document: &Value) -> Vec<Key> {
    let entries = document.get("keys").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    entries
        .iter()
        .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
        .filter(|k| k.get("kty").and_then(Value::as_str) != Some("oct"))
        .filter_map(|k| {
            let jwk: Jwk = serde_json::from_value(k.clone()).ok()?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            let alg = match k.get("alg").and_then(Value::as_str) {
                None => None,
                Some(name) => Some(ALGORITHMS.into_iter().find(|a| format!("{a:?}") == name)?),
            };
            Some(Key { kid: jwk.common.key_id.clone(), alg, key })
        })
        .take(MAX_KEYS)
        .collect()
}

/// Where an issuer's metadata may be: RFC 8414 (the well-known path before the issuer's
/// path), then OpenID Connect discovery (appended, then inserted).
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let issuer = issuer.trim_end_matches('/');
    let scheme_end = issuer.find("://").map_or(0, |i| i + 3);
    let path_start = issuer[scheme_end..].find('/').map_or(issuer.len(), |i| scheme_end + i);
    let (origin, path) = issuer.split_at(path_start);
    let mut urls = vec![format!("{origin}/.well-known/oauth-authorization-server{path}")];
    urls.push(format!("{issuer}/.well-known/openid-configuration"));
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
    }
    urls
}

/// Sends a request and reads its JSON answer, bounded.
async fn read_json(request: reqwest::RequestBuilder) -> Result<Value, AuthError> {
    let mut response = request.send().await.map_err(|e| {
        let what = if e.is_timeout() { "timed out" } else { "unreachable" };
        AuthError::Unavailable(format!("the authorization server is {what}"))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(AuthError::Unavailable(format!(
            "the authorization server answered HTTP {}",
            status.as_u16()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| AuthError::Unavailable("the authorization server's answer was cut short".into()))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(AuthError::Unavailable(format!(
                "the authorization server's answer exceeds {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|_| AuthError::Unavailable("the authorization server answered with invalid JSON".into()))
}

/// Whether `aud` (a string or an array of strings) names `audience`.
fn audience_matches(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// The scopes a token's claims grant: `scope` (space-separated, RFC 8693 / 9068) or `scp`
/// (a list or a string, as some issuers write it).
pub fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut scopes: Vec<&str> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace()),
            Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    scopes
}

/// Which of `required` the claims do not grant.
pub fn missing_scopes<'a>(
    claims: &Map<String, Value>,
    required: impl Iterator<Item = &'a String>,
) -> Vec<&'a str> {
    let granted = granted_scopes(claims);
    required.map(String::as_str).filter(|r| !granted.contains(r)).collect()
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A value from a token, safe to echo in a message: printable ASCII, cut short.
fn printable(value: &str) -> String {
    value.chars().filter(|c| c.is_ascii_graphic()).take(32).collect()
}
