//! The bridge as an OAuth 2.1 client, per the MCP authorization specification
//! (2025-11-25, and the 2026-07-28 additions the conformance suite checks), for
//! `--transport mcp` to a gateway that answers `401` with
//! `WWW-Authenticate: Bearer resource_metadata=…`.
//!
//! # Flow
//! 1. A `401` (or none yet): protected resource metadata (RFC 9728) from the
//!    challenge's `resource_metadata`, else the path-suffixed then the root
//!    well-known URL; its `resource` must name this gateway. No document at all
//!    means a 2025-03-26 server: the authorization server is the gateway's
//!    origin, with `/authorize`, `/token`, `/register` if it has no metadata either.
//! 2. Authorization server metadata: RFC 8414 then OpenID Connect, in the spec's
//!    order; its `issuer` must be the one asked for, and it must list PKCE `S256`.
//! 3. The client: a pre-registered id (`--oauth-client-id`, secret in
//!    `SWITCHBOARD_OAUTH_CLIENT_SECRET`), else a client ID metadata document
//!    (`--oauth-client-metadata-url`) when the server advertises support, else
//!    dynamic registration (RFC 7591) of a native client with a loopback redirect.
//! 4. Scopes: the challenge's `scope`, else the metadata's `scopes_supported`, else
//!    none; plus `offline_access` when the authorization server lists it.
//! 5. The authorization URL (PKCE S256, `state`, `resource` per RFC 8707) opens
//!    in the system browser (or is printed to stderr with `--no-browser`); a
//!    listener on `127.0.0.1` takes the one redirect (state checked; RFC 9207
//!    `iss` checked); the code is exchanged with the client's token endpoint
//!    authentication method (`none`, `client_secret_basic`, `client_secret_post`).
//! 6. Tokens are stored ([`store`]) under the gateway's endpoint URL; an expired
//!    access token is refreshed silently; a `401` with a token tries the refresh
//!    token once, then authorizes again; a `403 insufficient_scope` re-authorizes
//!    with the union of the scopes held and the scopes challenged (a challenge
//!    for nothing new is not retried, so a server that never accepts cannot loop).
//!
//! **Invariant:** no token, secret, code or verifier is logged or shown; the only
//! thing printed is the authorization URL, on stderr (stdout is the MCP channel).
//!
//! **Tests only:** `SWITCHBOARD_OAUTH_TEST_FOLLOW_AUTHORIZATION_URL=1` makes the
//! bridge GET the authorization URL itself (following redirects to its own
//! listener) instead of waiting for a person — for authorization servers that
//! approve without a login page, as the conformance suite's do.

mod challenge;
mod discovery;
mod flow;
mod loopback;
mod pkce;
mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;

pub use store::Secret;
use store::{AuthMethod, ClientInfo, Store, TokenRecord};

use super::error::GatewayError;
use challenge::BearerChallenge;
use discovery::ServerMetadata;
use flow::{AuthorizationRequest, Grant, TokenError};

/// Environment variable holding a pre-registered client's secret (never argv).
pub const CLIENT_SECRET_ENV: &str = "SWITCHBOARD_OAUTH_CLIENT_SECRET";
/// Tests only: the bridge fetches the authorization URL itself (see the module docs).
pub const TEST_FOLLOW_ENV: &str = "SWITCHBOARD_OAUTH_TEST_FOLLOW_AUTHORIZATION_URL";
/// Times one request is sent again after answering a 401/403 challenge.
pub(crate) const MAX_CHALLENGES: u32 = 2;
/// An access token this close to its expiry is refreshed before use (seconds).
const EXPIRY_MARGIN: u64 = 30;

/// Where tokens are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreKind {
    /// The OS credential store on macOS and Windows, a 0600 file elsewhere.
    #[default]
    Auto,
    /// The OS credential store (falls back to the file where there is none).
    Keyring,
    /// A 0600 file in the bridge's config folder.
    File,
    /// Nothing written: authorize on every start.
    Memory,
}

/// The bridge's OAuth command-line options (shared by `bridge` and `bridge check`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OAuthArgs {
    /// Never run the OAuth flow (mcp transport): a 401 is reported as is.
    #[arg(long)]
    pub no_oauth: bool,
    /// A client id registered in advance with the authorization server (its secret,
    /// if any, in SWITCHBOARD_OAUTH_CLIENT_SECRET).
    #[arg(long, env = "SWITCHBOARD_OAUTH_CLIENT_ID")]
    pub oauth_client_id: Option<String>,
    /// HTTPS URL of this client's metadata document, used as the client id where the
    /// authorization server supports client ID metadata documents.
    #[arg(long, env = "SWITCHBOARD_OAUTH_CLIENT_METADATA_URL")]
    pub oauth_client_metadata_url: Option<String>,
    /// Do not open a browser: print the authorization URL on stderr and wait for the
    /// redirect to the loopback listener.
    #[arg(long)]
    pub no_browser: bool,
    /// Where tokens are kept.
    #[arg(long, value_enum, default_value_t)]
    pub oauth_store: StoreKind,
    /// Port of the loopback redirect listener (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub oauth_redirect_port: u16,
    /// How long to wait for the user to finish authorizing, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub oauth_wait_secs: f64,
}

impl OAuthArgs {
    /// The runtime options; `None` with `--no-oauth`.
    pub fn options(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<OAuthOptions>, String> {
        if self.no_oauth {
            return Ok(None);
        }
        let wait = Duration::try_from_secs_f64(self.oauth_wait_secs)
            .map_err(|_| "--oauth-wait-secs must be a positive number".to_owned())?;
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        Ok(Some(OAuthOptions {
            client_id: set(self.oauth_client_id.clone()),
            client_secret: set(env(CLIENT_SECRET_ENV)).map(Secret::new),
            client_metadata_url: set(self.oauth_client_metadata_url.clone()),
            open_browser: !self.no_browser,
            follow_authorization_url: env(TEST_FOLLOW_ENV).is_some_and(|v| v == "1"),
            interactive: true,
            store: self.oauth_store,
            store_dir: None,
            redirect_port: self.oauth_redirect_port,
            wait,
        }))
    }
}

/// What the OAuth client is allowed and told to do.
#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// Pre-registered client id.
    pub client_id: Option<String>,
    /// Its secret (confidential client), from the environment.
    pub client_secret: Option<Secret>,
    /// Client ID metadata document URL.
    pub client_metadata_url: Option<String>,
    /// Open the system browser on the authorization URL (else only print it).
    pub open_browser: bool,
    /// Tests only: GET the authorization URL from the bridge itself.
    pub follow_authorization_url: bool,
    /// False: never start an authorization (`bridge check`); refresh only.
    pub interactive: bool,
    /// Where tokens are kept.
    pub store: StoreKind,
    /// Folder for the file store (default: the bridge's config folder).
    pub store_dir: Option<PathBuf>,
    /// Loopback listener port (0: any).
    pub redirect_port: u16,
    /// Bound on waiting for the redirect.
    pub wait: Duration,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            open_browser: true,
            follow_authorization_url: false,
            interactive: true,
            store: StoreKind::Auto,
            store_dir: None,
            redirect_port: 0,
            wait: Duration::from_secs(300),
        }
    }
}

/// A failed authorization step, as a sentence for the user (never a secret).
#[derive(Debug, Clone)]
pub(crate) struct AuthError(String);

impl AuthError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<getrandom::Error> for AuthError {
    fn from(e: getrandom::Error) -> Self {
        Self(format!("no randomness from the OS: {e}"))
    }
}

/// The MCP endpoint the bridge posts to for `url` (the rule of the mcp transport).
pub(crate) fn endpoint_for(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/mcp") { base.to_owned() } else { format!("{base}/mcp") }
}

/// The OAuth client for a bridge: `None` unless the transport is mcp, OAuth is on,
/// and no static token is configured (a static token keeps today's behaviour).
pub(crate) fn for_bridge(opts: &super::BridgeOptions, http: &reqwest::Client) -> Option<Arc<OAuth>> {
    let options = opts.oauth.clone()?;
    if opts.transport != super::Transport::Mcp || opts.credentials.get("token").is_some() {
        return None;
    }
    match OAuth::new(options, http.clone(), &endpoint_for(opts.url.trim()), &|k| std::env::var(k).ok()) {
        Ok(oauth) => Some(Arc::new(oauth)),
        Err(e) => {
            tracing::warn!(error = %e, "OAuth is off");
            None
        }
    }
}

/// Sends a request through `send` (which must put [`OAuth::access_token`] in its
/// `Authorization` header each time), answering 401/403 challenges: the request
/// is sent again, at most [`MAX_CHALLENGES`] times, after each new token.
pub(crate) async fn send_with<F, Fut>(
    oauth: Option<&OAuth>,
    mut send: F,
) -> Result<reqwest::Response, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Response, GatewayError>>,
{
    let Some(oauth) = oauth else {
        return send().await;
    };
    oauth.prepare().await;
    let mut sent = oauth.access_token();
    let mut response = send().await?;
    for _ in 0..MAX_CHALLENGES {
        let status = response.status().as_u16();
        if status != 401 && status != 403 {
            break;
        }
        match oauth.answer(status, response.headers(), sent.as_ref()).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %e, "OAuth authorization failed");
                return Err(GatewayError::Refused {
                    message: format!("OAuth authorization failed: {e}"),
                    no_credentials: false,
                });
            }
        }
        sent = oauth.access_token();
        response = send().await?;
    }
    Ok(response)
}

/// The OAuth client of one bridge (one gateway endpoint).
pub(crate) struct OAuth {
    opts: OAuthOptions,
    http: reqwest::Client,
    endpoint: Url,
    /// The store key: the endpoint URL.
    key: String,
    store: Store,
    /// The access token requests carry (read on every request).
    current: std::sync::RwLock<Option<Secret>>,
    /// Its expiry (unix seconds, 0: unknown), for the fast path of [`Self::prepare`].
    expires_at: AtomicU64,
    loaded: AtomicBool,
    /// Serializes loading, refreshing and authorizing.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    record: Option<TokenRecord>,
    /// The current token came from a refresh after a 401: a second 401 means
    /// authorizing again, not refreshing again.
    refreshed_after_401: bool,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("endpoint", &self.endpoint.as_str())
            .field("store", &self.store)
            .finish()
    }
}

impl OAuth {
    /// An OAuth client for the MCP endpoint `endpoint`.
    pub(crate) fn new(
        opts: OAuthOptions,
        http: reqwest::Client,
        endpoint: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AuthError> {
        let endpoint =
            Url::parse(endpoint).map_err(|e| AuthError::new(format!("gateway URL {endpoint:?}: {e}")))?;
        let store = Store::new(opts.store, opts.store_dir.clone(), env);
        Ok(Self {
            key: endpoint.as_str().to_owned(),
            endpoint,
            store,
            opts,
            http,
            current: std::sync::RwLock::new(None),
            expires_at: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// The access token to send, if there is one.
    pub(crate) fn access_token(&self) -> Option<Secret> {
        self.current.read().ok().and_then(|t| t.clone())
    }

    fn near_expiry(&self) -> bool {
        let at = self.expires_at.load(Ordering::Acquire);
        at != 0 && flow::now().saturating_add(EXPIRY_MARGIN) >= at
    }

    /// Before a request: the stored token is loaded on first use, and an access
    /// token at (or near) its expiry is refreshed (best effort: on failure the
    /// request goes out and its 401 is answered).
    pub(crate) async fn prepare(&self) {
        if self.loaded.load(Ordering::Acquire) && !self.near_expiry() {
            return;
        }
        let mut state = self.state.lock().await;
        self.ensure_loaded(&mut state).await;
        if self.near_expiry() && state.record.as_ref().is_some_and(|r| r.refresh_token.is_some()) {
            match self.refresh(&mut state).await {
                Ok(()) => state.refreshed_after_401 = false,
                Err(e) => tracing::info!(error = %e, "could not refresh the access token"),
            }
        }
    }

    /// After a 401 or 403 answer to a request that carried `sent`: gets a better
    /// token. `Ok(true)`: send the request again; `Ok(false)`: give up (the answer
    /// stands).
    pub(crate) async fn answer(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        sent: Option<&Secret>,
    ) -> Result<bool, AuthError> {
        let values =
            headers.get_all(reqwest::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
        let challenge = challenge::bearer(values);
        let mut state = self.state.lock().await;
        self.ensure_loaded(&mut state).await;
        let current = state.record.as_ref().and_then(|r| r.access_token.clone());
        if current.is_some() && current.as_ref() != sent {
            // Another request renewed the token meanwhile.
            return Ok(true);
        }
        match status {
            401 => {
                let challenge = challenge.unwrap_or_default();
                let refreshable = state.record.as_ref().is_some_and(|r| r.refresh_token.is_some());
                if sent.is_some() && refreshable && !state.refreshed_after_401 {
                    match self.refresh(&mut state).await {
                        Ok(()) => {
                            state.refreshed_after_401 = true;
                            return Ok(true);
                        }
                        Err(e) => tracing::info!(error = %e, "refresh failed; authorizing again"),
                    }
                }
                self.authorize(&mut state, &challenge, None).await?;
                Ok(true)
            }
            403 => {
                let Some(challenge) = challenge.filter(|c| c.error.as_deref() == Some("insufficient_scope"))
                else {
                    return Ok(false);
                };
                let held: Vec<String> = state.record.as_ref().map(|r| r.scopes.clone()).unwrap_or_default();
                let wanted = challenge.scopes();
                if wanted.is_empty() || wanted.iter().all(|s| held.contains(s)) {
                    tracing::warn!(
                        scope = challenge.scope.as_deref().unwrap_or(""),
                        "the gateway wants scopes already asked for; not authorizing again"
                    );
                    return Ok(false);
                }
                let union = union(&held, &wanted);
                tracing::info!(scopes = %union.join(" "), "step-up authorization for more scopes");
                self.authorize(&mut state, &challenge, Some(union)).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ensure_loaded(&self, state: &mut State) {
        if state.loaded {
            return;
        }
        state.loaded = true;
        let store = self.store.clone();
        let key = self.key.clone();
        let record = tokio::task::spawn_blocking(move || store.load(&key)).await.ok().flatten();
        if let Some(record) = &record {
            tracing::debug!(issuer = %record.issuer, "loaded stored OAuth tokens");
            self.publish(record);
        }
        state.record = record;
        self.loaded.store(true, Ordering::Release);
    }

    /// Makes `record`'s access token the one requests carry.
    fn publish(&self, record: &TokenRecord) {
        if let Ok(mut current) = self.current.write() {
            *current = record.access_token.clone();
        }
        self.expires_at.store(record.expires_at.unwrap_or(0), Ordering::Release);
    }

    async fn install(&self, state: &mut State, record: TokenRecord) {
        self.publish(&record);
        let store = self.store.clone();
        let key = self.key.clone();
        let saved = record.clone();
        let _ = tokio::task::spawn_blocking(move || store.save(&key, &saved)).await;
        state.record = Some(record);
    }

    async fn refresh(&self, state: &mut State) -> Result<(), AuthError> {
        let Some(record) = state.record.clone() else {
            return Err(AuthError::new("nothing to refresh"));
        };
        let Some(refresh_token) = record.refresh_token.clone() else {
            return Err(AuthError::new("no refresh token"));
        };
        let grant = Grant::Refresh { refresh_token: &refresh_token };
        match flow::token_request(
            &self.http,
            &record.token_endpoint,
            &grant,
            &record.client,
            &record.resource,
        )
        .await
        {
            Ok(token) => {
                let expires_at = token.expires_at();
                let mut renewed = record;
                renewed.access_token = Some(token.access_token);
                renewed.refresh_token = token.refresh_token.or(Some(refresh_token));
                renewed.expires_at = expires_at;
                self.install(state, renewed).await;
                tracing::info!("access token refreshed");
                Ok(())
            }
            Err(TokenError::Rejected(text)) => {
                // The refresh token is dead: forget the tokens, keep the registration.
                let mut cleared = record;
                cleared.access_token = None;
                cleared.refresh_token = None;
                cleared.expires_at = None;
                self.install(state, cleared).await;
                Err(AuthError::new(format!("the refresh was refused ({text})")))
            }
            Err(TokenError::Other(e)) => Err(e),
        }
    }

    /// The whole authorization: discovery, client, browser, redirect, token.
    async fn authorize(
        &self,
        state: &mut State,
        challenge: &BearerChallenge,
        step_up: Option<Vec<String>>,
    ) -> Result<(), AuthError> {
        if !self.opts.interactive {
            return Err(AuthError::new(
                "the gateway needs an OAuth authorization; start the bridge (it opens a browser) to authorize",
            ));
        }
        // 1. Discovery.
        let resource_metadata =
            discovery::resource_metadata(&self.http, &self.endpoint, challenge.resource_metadata.as_deref())
                .await?;
        let (issuer, resource, resource_scopes) = match &resource_metadata {
            Some(prm) => {
                let issuer = prm.authorization_servers.first().cloned().ok_or_else(|| {
                    AuthError::new("the protected resource metadata names no authorization server")
                })?;
                (issuer, prm.resource.clone(), prm.scopes_supported.clone())
            }
            None => (self.endpoint.origin().ascii_serialization(), self.endpoint.as_str().to_owned(), None),
        };
        let named = resource_metadata.is_some();
        let metadata = match discovery::server_metadata(&self.http, &issuer, named).await? {
            Some(metadata) => metadata,
            None if !named => legacy_endpoints(&issuer),
            None => {
                return Err(AuthError::new(format!("no authorization server metadata found for {issuer}")));
            }
        };
        // 2. Scopes.
        let mut scopes = match step_up {
            Some(scopes) => scopes,
            None => {
                let challenged = challenge.scopes();
                if challenged.is_empty() { resource_scopes.unwrap_or_default() } else { challenged }
            }
        };
        let offline = metadata
            .scopes_supported
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == "offline_access"))
            && metadata.grant_types_supported.as_ref().is_none_or(|g| g.iter().any(|g| g == "refresh_token"));
        if offline && !scopes.is_empty() && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".to_owned());
        }
        scopes = union(&[], &scopes);
        // 3. The client and the redirect listener.
        let stored = state.record.as_ref().filter(|r| r.issuer == issuer).map(|r| r.client.clone());
        let (client, listener) = self.client(&metadata, stored, &scopes).await?;
        let redirect_uri = listener.redirect_uri();
        // 4. The authorization request.
        let pkce = pkce::Pkce::new()?;
        let state_value = pkce::random_token(24)?;
        let url = flow::authorization_url(
            &metadata.authorization_endpoint,
            &AuthorizationRequest {
                client_id: &client.client_id,
                redirect_uri: &redirect_uri,
                state: &state_value,
                code_challenge: &pkce.challenge,
                resource: &resource,
                scopes: &scopes,
            },
        )?;
        self.present(&url);
        let params = tokio::time::timeout(self.opts.wait, listener.next_callback()).await.map_err(|_| {
            AuthError::new(format!("no authorization arrived within {} s", self.opts.wait.as_secs()))
        })?;
        drop(listener);
        // 5. The redirect.
        check_callback(&params, &state_value, &metadata)?;
        let code = params.get("code").ok_or_else(|| AuthError::new("the redirect carried no code"))?;
        // 6. The token.
        let grant = Grant::Code { code, verifier: &pkce.verifier, redirect_uri: &redirect_uri };
        let token = flow::token_request(&self.http, &metadata.token_endpoint, &grant, &client, &resource)
            .await
            .map_err(|e| match e {
                TokenError::Rejected(text) => {
                    AuthError::new(format!("the token endpoint refused the code ({text})"))
                }
                TokenError::Other(e) => e,
            })?;
        let expires_at = token.expires_at();
        let record = TokenRecord {
            issuer,
            token_endpoint: metadata.token_endpoint.clone(),
            resource,
            client,
            access_token: Some(token.access_token),
            refresh_token: token.refresh_token,
            expires_at,
            scopes,
        };
        self.install(state, record).await;
        state.refreshed_after_401 = false;
        tracing::info!(endpoint = self.endpoint.as_str(), "authorized");
        Ok(())
    }

    /// The client to authorize as, and a listener on a port its redirect URI allows.
    async fn client(
        &self,
        metadata: &ServerMetadata,
        stored: Option<ClientInfo>,
        scopes: &[String],
    ) -> Result<(ClientInfo, loopback::Listener), AuthError> {
        let bind = |port: u16| async move {
            loopback::Listener::bind(port).await.map_err(|e| {
                AuthError::new(format!("cannot listen on 127.0.0.1:{port} for the redirect: {e}"))
            })
        };
        if let Some(client_id) = &self.opts.client_id {
            let secret = self.opts.client_secret.clone();
            let auth_method = flow::choose_auth_method(
                secret.is_some(),
                metadata.token_endpoint_auth_methods_supported.as_deref(),
            );
            let client = ClientInfo {
                client_id: client_id.clone(),
                client_secret: secret,
                auth_method,
                redirect_uri: None,
                kind: "preregistered".into(),
            };
            return Ok((client, bind(self.opts.redirect_port).await?));
        }
        if let Some(url) = &self.opts.client_metadata_url
            && metadata.client_id_metadata_document_supported == Some(true)
        {
            let client = ClientInfo {
                client_id: url.clone(),
                client_secret: None,
                auth_method: AuthMethod::None,
                redirect_uri: None,
                kind: "metadata_document".into(),
            };
            return Ok((client, bind(self.opts.redirect_port).await?));
        }
        // A client registered earlier at this server, if its redirect port is free.
        if let Some(client) = stored.filter(|c| c.kind == "dynamic") {
            let port = client.redirect_uri.as_deref().and_then(|u| Url::parse(u).ok()).and_then(|u| u.port());
            if let Some(port) = port
                && let Ok(listener) = loopback::Listener::bind(port).await
            {
                return Ok((client, listener));
            }
        }
        let Some(registration_endpoint) = &metadata.registration_endpoint else {
            return Err(AuthError::new(format!(
                "the authorization server {} offers no dynamic client registration: register a client there and \
                 give its id with --oauth-client-id (and its secret, if any, in {CLIENT_SECRET_ENV})",
                metadata.issuer
            )));
        };
        let listener = bind(self.opts.redirect_port).await?;
        let client =
            flow::register(&self.http, metadata, registration_endpoint, &listener.redirect_uri(), scopes)
                .await?;
        Ok((client, listener))
    }

    /// Shows the authorization URL: the browser, and always stderr.
    fn present(&self, url: &Url) {
        let target = self.endpoint.as_str();
        if self.opts.open_browser {
            match open::that_detached(url.as_str()) {
                Ok(()) => eprintln!(
                    "switchboard bridge: a browser window asks you to authorize access to {target}; \
                     if none opened, visit:\n  {url}"
                ),
                Err(e) => eprintln!(
                    "switchboard bridge: could not open a browser ({e}); to authorize access to {target}, visit:\n  {url}"
                ),
            }
        } else {
            eprintln!(
                "switchboard bridge: to authorize access to {target}, open this URL in a browser:\n  {url}"
            );
        }
        if self.opts.follow_authorization_url {
            let http = self.http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                match http.get(url).timeout(Duration::from_secs(30)).send().await {
                    Ok(r) => tracing::debug!(
                        status = r.status().as_u16(),
                        "followed the authorization URL (test mode)"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e.without_url(), "following the authorization URL failed")
                    }
                }
            });
        }
    }
}

/// The redirect's checks: `state`, an `error`, and RFC 9207 `iss` — required and
/// compared exactly when the server advertises it, compared exactly when present.
fn check_callback(
    params: &std::collections::HashMap<String, String>,
    expected_state: &str,
    metadata: &ServerMetadata,
) -> Result<(), AuthError> {
    if params.get("state").map(String::as_str) != Some(expected_state) {
        return Err(AuthError::new("the redirect's state does not match the request: ignoring it"));
    }
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        return Err(AuthError::new(format!("the authorization server answered {error}{description}")));
    }
    match params.get("iss") {
        Some(iss) if iss != &metadata.issuer => Err(AuthError::new(format!(
            "the redirect comes from issuer {iss:?}, not {:?} (RFC 9207): ignoring it",
            metadata.issuer
        ))),
        None if metadata.authorization_response_iss_parameter_supported == Some(true) => Err(AuthError::new(
            "the authorization server promises an iss parameter (RFC 9207) but the redirect has none: ignoring it",
        )),
        _ => Ok(()),
    }
}

/// 2025-03-26 servers without any metadata: the default endpoints at the origin.
fn legacy_endpoints(origin: &str) -> ServerMetadata {
    let origin = origin.trim_end_matches('/');
    ServerMetadata {
        issuer: origin.to_owned(),
        authorization_endpoint: format!("{origin}/authorize"),
        token_endpoint: format!("{origin}/token"),
        registration_endpoint: Some(format!("{origin}/register")),
        scopes_supported: None,
        grant_types_supported: None,
        code_challenge_methods_supported: Some(vec!["S256".to_owned()]),
        token_endpoint_auth_methods_supported: None,
        client_id_metadata_document_supported: None,
        authorization_response_iss_parameter_supported: None,
    }
}

/// `a` then the items of `b` not in it, without duplicates, order kept.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(a.len() + b.len());
    for s in a.iter().chain(b) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// What `bridge check` says about the stored authorization (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAuth {
    /// Nothing stored: the first request opens the browser.
    None { store: String },
    /// An access token; `until` in unix seconds when known.
    Valid { until: Option<u64>, refreshable: bool, store: String },
    /// Expired (or dropped); a refresh token may renew it silently.
    Expired { refreshable: bool, store: String },
}

impl std::fmt::Display for StoredAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None { store } => write!(
                f,
                "no OAuth token stored ({store}); the first request will open a browser to authorize"
            ),
            Self::Valid { until, refreshable, store } => {
                match until {
                    Some(t) => {
                        let at = std::time::UNIX_EPOCH + Duration::from_secs(*t);
                        write!(f, "access token valid until {}", humantime::format_rfc3339_seconds(at))?;
                    }
                    None => f.write_str("access token stored (no expiry given)")?,
                }
                let refresh = if *refreshable { "refreshable" } else { "not refreshable" };
                write!(f, ", {refresh} ({store})")
            }
            Self::Expired { refreshable: true, store } => {
                write!(f, "access token expired; a refresh token will renew it silently ({store})")
            }
            Self::Expired { refreshable: false, store } => {
                write!(
                    f,
                    "access token expired and not refreshable: the next start opens a browser ({store})"
                )
            }
        }
    }
}

/// The stored authorization for the gateway at `url`.
pub fn stored_auth(opts: &OAuthOptions, url: &str) -> StoredAuth {
    let env = |k: &str| std::env::var(k).ok();
    let store = Store::new(opts.store, opts.store_dir.clone(), &env);
    let described = store.describe();
    let Ok(endpoint) = Url::parse(&endpoint_for(url)) else {
        return StoredAuth::None { store: described };
    };
    let Some(record) = store.load(endpoint.as_str()) else {
        return StoredAuth::None { store: described };
    };
    let refreshable = record.refresh_token.is_some();
    let live = record.access_token.is_some() && record.expires_at.is_none_or(|t| t > flow::now());
    if live {
        StoredAuth::Valid { until: record.expires_at, refreshable, store: described }
    } else {
        StoredAuth::Expired { refreshable, store: described }
    }
}

#[cfg(test)]
mod tests;
