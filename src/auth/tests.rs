//! Auth mode `oauth`: token validation against a key set served on loopback, with keys made
//! here and tokens signed here (by aws-lc-rs directly, not by the validator's library).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{AuthError, Authenticator};
use crate::config::Config;
use crate::crypto::Sealer;

const AUDIENCE: &str = "https://gw.test/mcp";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A signing key and its public JWK.
enum Signer {
    Rsa(signature::RsaKeyPair),
    Ec(signature::EcdsaKeyPair),
    Ed(signature::Ed25519KeyPair),
}

struct TestKey {
    kid: String,
    signer: Signer,
}

impl TestKey {
    fn rsa(kid: &str) -> Self {
        let key = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Self { kid: kid.into(), signer: Signer::Rsa(key) }
    }

    fn ec(kid: &str) -> Self {
        let key = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self { kid: kid.into(), signer: Signer::Ec(key) }
    }

    fn ed(kid: &str) -> Self {
        Self { kid: kid.into(), signer: Signer::Ed(signature::Ed25519KeyPair::generate().unwrap()) }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(k) => {
                let public = k.public_key();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                       "n": b64(public.modulus().big_endian_without_leading_zero()),
                       "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
            Signer::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid,
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// A compact JWS of `claims` with this key.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": self.alg(), "kid": self.kid, "typ": "at+jwt"}), claims)
    }

    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message =
            format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::Ec(k) => k.sign(&rng, message.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(message.as_bytes()).as_ref().to_vec(),
        };
        format!("{message}.{}", b64(&signature))
    }
}

/// A loopback authorization server: RFC 8414 metadata, a key set that tests may change,
/// an introspection endpoint, and counts of what was asked.
struct Issuer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    introspection: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    introspections: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[&TestKey]) -> Self {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})));
        let introspection = Arc::new(Mutex::new(json!({"active": false})));
        let (jwks_fetches, introspections) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { axum::Json(metadata) }),
            )
            .route("/jwks", {
                let (jwks, count) = (jwks.clone(), jwks_fetches.clone());
                get(move || async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    axum::Json(jwks.lock().unwrap().clone())
                })
            })
            .route("/introspect", {
                let (answer, count) = (introspection.clone(), introspections.clone());
                post(move |headers: axum::http::HeaderMap, body: String| async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    assert!(headers.get("authorization").unwrap().to_str().unwrap().starts_with("Basic "));
                    assert!(body.starts_with("token="), "{body}");
                    axum::Json(answer.lock().unwrap().clone())
                })
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, jwks, introspection, jwks_fetches, introspections }
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }

    fn claims(&self) -> Value {
        json!({"iss": self.url, "sub": "user-1", "aud": AUDIENCE, "exp": now() + 300,
               "iat": now(), "scope": "mcp:tools profile", "email": "u1@example.com"})
    }

    fn authenticator(&self, extra: &str) -> Authenticator {
        let toml = format!(
            "[auth]\nmode = \"oauth\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n{extra}\n\
             [servers.a]\ncommand = [\"true\"]\nrequired_scopes = [\"a:use\"]\n\
             [servers.a.tools.admin]\nrequired_scopes = [\"a:admin\"]\n",
            self.url
        );
        let config = Config::load(Some(&toml), &|_| None, "switchboard").unwrap();
        Authenticator::new(&config, Sealer::ephemeral().unwrap().mac_key()).unwrap()
    }
}

fn invalid(result: Result<super::Verified, AuthError>) -> String {
    match result {
        Err(AuthError::InvalidToken(why)) => why,
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_for_this_audience_are_accepted() {
    let (rsa, ec, ed) = (TestKey::rsa("r1"), TestKey::ec("e1"), TestKey::ed("d1"));
    let issuer = Issuer::start(&[&rsa, &ec, &ed]).await;
    let auth = issuer.authenticator("");
    for key in [&rsa, &ec, &ed] {
        let verified = auth.verify_bearer(&key.sign(&issuer.claims())).await.unwrap();
        assert_eq!(verified.principal, format!("oauth:{}#user-1", issuer.url), "{}", key.alg());
        assert_eq!(verified.identity["email"], "u1@example.com");
    }
    // Discovered once through the RFC 8414 metadata, then served from the cache.
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
    // `verify` (session creation) takes the same token as `{"token": …}`.
    let created = auth.verify(&json!({"token": rsa.sign(&issuer.claims())})).await.unwrap();
    assert!(created.principal.ends_with("#user-1"));
    assert!(matches!(auth.verify(&json!({})).await, Err(AuthError::Missing)));
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_is_refused() {
    let key = TestKey::rsa("r1");
    let issuer = Issuer::start(&[&key]).await;
    let auth = issuer.authenticator("");
    let mut claims = issuer.claims();
    claims["aud"] = json!("https://other.test/mcp");
    assert!(invalid(auth.verify_bearer(&key.sign(&claims)).await).contains("aud"));
    claims["aud"] = json!(["https://other.test/mcp", AUDIENCE]);
    assert!(auth.verify_bearer(&key.sign(&claims)).await.is_ok(), "one of several audiences is ours");
    let mut claims = issuer.claims();
    claims["iss"] = json!("https://evil.test");
    assert!(invalid(auth.verify_bearer(&key.sign(&claims)).await).contains("iss"));
    let mut claims = issuer.claims();
    claims.as_object_mut().unwrap().remove("aud");
    assert!(invalid(auth.verify_bearer(&key.sign(&claims)).await).contains("aud"));
}

#[tokio::test]
async fn expiry_and_not_before_allow_sixty_seconds_of_skew() {
    let key = TestKey::ec("e1");
    let issuer = Issuer::start(&[&key]).await;
    let auth = issuer.authenticator("");
    let mut claims = issuer.claims();
    claims["exp"] = json!(now() - 120);
    assert!(invalid(auth.verify_bearer(&key.sign(&claims)).await).contains("expired"));
    claims["exp"] = json!(now() - 30);
    assert!(auth.verify_bearer(&key.sign(&claims)).await.is_ok(), "within the leeway");
    let mut claims = issuer.claims();
    claims["nbf"] = json!(now() + 600);
    assert!(invalid(auth.verify_bearer(&key.sign(&claims)).await).contains("nbf"));
    claims["nbf"] = json!(now() + 30);
    assert!(auth.verify_bearer(&key.sign(&claims)).await.is_ok(), "within the leeway");
    let mut claims = issuer.claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert!(invalid(auth.verify_bearer(&key.sign(&claims)).await).contains("exp"));
}

#[tokio::test]
async fn alg_none_and_hs256_keyed_with_the_public_key_are_refused() {
    let key = TestKey::rsa("r1");
    let issuer = Issuer::start(&[&key]).await;
    let auth = issuer.authenticator("");
    let claims = issuer.claims();
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "r1"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    assert!(invalid(auth.verify_bearer(&none).await).contains("`none`"));
    // The classic confusion: HMAC with the issuer's public key (as published) as the secret.
    let header = b64(json!({"alg": "HS256", "kid": "r1"}).to_string().as_bytes());
    let message = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let jwk = key.jwk();
    for secret in [jwk["n"].as_str().unwrap().as_bytes().to_vec(), jwk.to_string().into_bytes()] {
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            message.as_bytes(),
        );
        let forged = format!("{message}.{}", b64(mac.as_ref()));
        assert!(invalid(auth.verify_bearer(&forged).await).contains("HS256"));
    }
    // A valid signature under a header that lies about the algorithm fails too.
    let swapped = key.sign_with_header(&json!({"alg": "ES256", "kid": "r1"}), &claims);
    assert!(auth.verify_bearer(&swapped).await.is_err());
    // A tampered payload does not verify.
    let good = key.sign(&claims);
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut other = claims.clone();
    other["sub"] = json!("admin");
    let payload = b64(other.to_string().as_bytes());
    parts[1] = &payload;
    assert!(invalid(auth.verify_bearer(&parts.join(".")).await).contains("signature"));
}

#[tokio::test]
async fn an_unknown_key_id_refetches_the_keys_at_most_once_per_interval() {
    let (old, new, stranger) = (TestKey::rsa("old"), TestKey::ed("new"), TestKey::ed("stranger"));
    let issuer = Issuer::start(&[&old]).await;
    let auth = issuer.authenticator("jwks_refetch_min_secs = 3600");
    assert!(auth.verify_bearer(&old.sign(&issuer.claims())).await.is_ok());
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
    // Rotation right after the first fetch: the rate limit holds the refetch back.
    issuer.publish(&[&old, &new]);
    for _ in 0..5 {
        let why = invalid(auth.verify_bearer(&stranger.sign(&issuer.claims())).await);
        assert!(why.contains("key"), "{why}");
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1, "refetches are rate-limited");

    // With a short interval, a rotated key is picked up on first sight, without a restart.
    let auth = issuer.authenticator("jwks_refetch_min_secs = 0");
    issuer.publish(&[&old]);
    assert!(auth.verify_bearer(&old.sign(&issuer.claims())).await.is_ok());
    let before = issuer.jwks_fetches.load(Ordering::SeqCst);
    issuer.publish(&[&new]);
    let verified = auth.verify_bearer(&new.sign(&issuer.claims())).await.unwrap();
    assert!(verified.principal.ends_with("#user-1"));
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), before + 1);
    // The retired key is gone with the old set.
    assert!(auth.verify_bearer(&old.sign(&issuer.claims())).await.is_err());
}

#[tokio::test]
async fn global_server_and_tool_scopes_are_required() {
    let key = TestKey::rsa("r1");
    let issuer = Issuer::start(&[&key]).await;
    let auth = issuer.authenticator("required_scopes = [\"mcp:tools\", \"mcp:extra\"]");
    match auth.verify_bearer(&key.sign(&issuer.claims())).await {
        Err(AuthError::InsufficientScope { scope }) => assert_eq!(scope, "mcp:tools mcp:extra"),
        other => panic!("expected insufficient_scope, got {other:?}"),
    }
    let auth = issuer.authenticator("required_scopes = [\"mcp:tools\"]");
    let verified = auth.verify_bearer(&key.sign(&issuer.claims())).await.unwrap();
    let mut credentials = auth.stored_credentials(&json!({"token": "t", "api_key": "k"}), &verified);
    assert_eq!(credentials.get("token"), None, "the access token is never stored");
    assert_eq!(credentials["api_key"], "k");
    assert_eq!(credentials["claims"]["email"], "u1@example.com");
    // Server `a` needs `a:use`, its tool `admin` also `a:admin`.
    let needs = |r: Result<(), AuthError>| match r {
        Err(AuthError::InsufficientScope { scope }) => scope,
        other => panic!("expected insufficient_scope, got {other:?}"),
    };
    assert_eq!(needs(auth.check_scopes(&credentials, "a", Some("read"))), "a:use");
    let mut claims = issuer.claims();
    claims["scp"] = json!(["a:use"]);
    let verified = auth.verify_bearer(&key.sign(&claims)).await.unwrap();
    auth.request_credentials(&mut credentials, &verified, "t");
    assert!(auth.check_scopes(&credentials, "a", Some("read")).is_ok());
    assert_eq!(needs(auth.check_scopes(&credentials, "a", Some("admin"))), "a:use a:admin");
    assert_eq!(credentials.get("access_token"), None, "no server asked for the token");
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_the_answer_cached_for_their_lifetime() {
    let key = TestKey::rsa("r1");
    let issuer = Issuer::start(&[&key]).await;
    let auth = issuer.authenticator(&format!(
        "introspection_url = \"{}/introspect\"\nintrospection_client_id = \"gw\"\n\
         introspection_client_secret = \"s3cret\"",
        issuer.url
    ));
    assert!(invalid(auth.verify_bearer("opaque-1").await).contains("not active"));
    *issuer.introspection.lock().unwrap() =
        json!({"active": true, "sub": "svc", "aud": [AUDIENCE], "exp": now() + 300, "scope": "mcp:tools"});
    let verified = auth.verify_bearer("opaque-2").await.unwrap();
    assert_eq!(verified.principal, format!("oauth:{}#svc", issuer.url));
    let asked = issuer.introspections.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert!(auth.verify_bearer("opaque-2").await.is_ok());
    }
    assert_eq!(issuer.introspections.load(Ordering::SeqCst), asked, "answered from the cache");
    *issuer.introspection.lock().unwrap() =
        json!({"active": true, "sub": "svc", "aud": "https://other.test/mcp"});
    assert!(invalid(auth.verify_bearer("opaque-3").await).contains("aud"));
    *issuer.introspection.lock().unwrap() =
        json!({"active": true, "sub": "svc", "aud": AUDIENCE, "exp": now() - 3600});
    assert!(invalid(auth.verify_bearer("opaque-4").await).contains("expired"));
    // Without introspection an opaque token is simply refused.
    assert!(invalid(issuer.authenticator("").verify_bearer("opaque-2").await).contains("not a JWT"));
}

#[test]
fn metadata_is_looked_for_where_rfc_8414_and_openid_connect_put_it() {
    assert_eq!(
        super::metadata_urls("https://as.test"),
        [
            "https://as.test/.well-known/oauth-authorization-server",
            "https://as.test/.well-known/openid-configuration"
        ]
    );
    assert_eq!(
        super::metadata_urls("https://as.test/realms/x/"),
        [
            "https://as.test/.well-known/oauth-authorization-server/realms/x",
            "https://as.test/realms/x/.well-known/openid-configuration",
            "https://as.test/.well-known/openid-configuration/realms/x",
        ]
    );
}
