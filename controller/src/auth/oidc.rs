//! OIDC: bearer JWTs signed by an identity provider, verified against its
//! key set (JWKS, from a file or a URL), with issuer, audience and expiry
//! checked, and a claim mapped to a role and a scope.
//!
//! How a token is judged, and why:
//!
//! - Keys come only from the configured key set, loaded when the verifier
//!   is made so that a broken setup fails at start. A token's header can
//!   never bring its own key (`jwk`, `jku`, `x5u` are ignored): a token
//!   must not vouch for itself.
//! - Only public keys verify: RSA (RS256/384/512, PS256/384/512), EC P-256
//!   (ES256) and P-384 (ES384), Ed25519 (EdDSA). Symmetric (`oct`) keys in
//!   the set are skipped, since a secret that verifies also signs; an HS*
//!   token is refused before any key is looked up, and `alg: none` is not
//!   an algorithm the parser knows, so such a token is malformed.
//! - Each key permits the algorithms of its type only (just its own `alg`
//!   when the set names one). The token's `alg` must be among them, so a
//!   token cannot make a key be used by another algorithm than its own.
//! - Providers rotate keys. For a URL source, a token whose `kid` is not in
//!   the set makes the verifier fetch the set again, but no sooner than
//!   [`REFETCH_EVERY`] after the previous fetch (the first one included), so
//!   made-up kids cannot turn the controller against the provider. One
//!   fetch runs at a time; tokens with a known `kid` never wait for it.
//! - The roles claim's values select grants: the highest role among the
//!   matching grants wins, with the scope of the first grant of that role
//!   in file order. No matching grant is a refusal, never a default role.
//! - An error says what was wrong, never what the token was.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::principal::system::OIDC_PREFIX;
use super::principal::{Method, Principal, Role, Scope};

/// Real key sets are a few KiB; a bigger document is refused, not read on.
const MAX_KEY_SET_BYTES: usize = 1024 * 1024;
/// A provider that has not answered in this time is down, for this fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two fetches of a URL key set.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// Clock skew tolerated between the provider and the controller on `exp`
/// and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;
/// Tokens longer than this (far above what providers issue, even with
/// hundreds of groups) are refused before any decoding work.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// The principal claim's value becomes a name in the audit log.
const MAX_PRINCIPAL_CHARS: usize = 128;

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The `oidc:` section of the auth file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// A value the token's `aud` must hold.
    pub audience: String,
    /// The key set as a JWKS JSON file; or
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// the key set's URL (https, or http on loopback).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The claim that names the principal (`oidc:<value>` in the audit log).
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The claim (a string or a list of strings) that grants roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Which value of `roles_claim` grants which role and scope.
    pub grants: Vec<Grant>,
}

fn default_principal_claim() -> String {
    "sub".into()
}

fn default_roles_claim() -> String {
    "groups".into()
}

/// A value of the roles claim and what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub value: String,
    pub role: Role,
    #[serde(default)]
    pub scope: Option<Scope>,
}

impl OidcConfig {
    /// Every problem of the section, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.issuer.trim().is_empty() {
            problems.push("oidc.issuer: must not be empty".to_string());
        }
        if self.audience.trim().is_empty() {
            problems.push("oidc.audience: must not be empty".to_string());
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) => problems
                .push("oidc.jwks_file, oidc.jwks_url: give one of them, not both".to_string()),
            (None, None) => {
                problems.push("oidc.jwks_file, oidc.jwks_url: one of them is required".to_string())
            }
            (Some(path), None) => {
                if path.as_os_str().is_empty() {
                    problems.push("oidc.jwks_file: must not be empty".to_string());
                }
            }
            (None, Some(url)) => {
                if let Err(problem) = key_set_url(url) {
                    problems.push(format!("oidc.jwks_url: {problem}"));
                }
            }
        }
        if self.principal_claim.is_empty() {
            problems.push("oidc.principal_claim: must not be empty".to_string());
        }
        if self.roles_claim.is_empty() {
            problems.push("oidc.roles_claim: must not be empty".to_string());
        }
        if self.grants.is_empty() {
            problems.push("oidc.grants: at least one grant is required".to_string());
        }
        for (i, grant) in self.grants.iter().enumerate() {
            if grant.value.trim().is_empty() {
                problems.push(format!("oidc.grants[{i}].value: must not be empty"));
            }
            if grant.role == Role::Admin && grant.scope.is_some() {
                problems.push(format!("oidc.grants[{i}].scope: an admin has no scope"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The key set's URL, if keys may be fetched from it. Whoever sits on the
/// path of a plain-HTTP fetch could serve their own keys and sign any
/// token, so http is only for a provider on the same machine.
fn key_set_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    let host = url.host_str().unwrap_or_default();
    // An IPv6 host comes bracketed, as in the URL.
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(
            "must be https://, or http:// to a loopback host (127.0.0.0/8, ::1, localhost)".into(),
        ),
    }
}

/// Why a JWT was not accepted. `reason` is a bounded label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("the token is not a valid JWT")]
    Malformed,
    #[error("the token's algorithm is not one its key permits (HMAC never is)")]
    Algorithm,
    #[error("no key of the issuer's key set matches the token's key id")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not from the configured issuer")]
    WrongIssuer,
    #[error("the token is not for the configured audience")]
    WrongAudience,
    #[error("claim `{claim}` {problem}")]
    BadClaim { claim: String, problem: String },
    #[error("{principal}: no value of claim `{claim}` matches a grant")]
    NoGrant { principal: String, claim: String },
    #[error("the issuer's key set could not be fetched: {0}")]
    KeysUnavailable(String),
}

impl OidcError {
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Malformed => "malformed",
            OidcError::Algorithm => "bad_algorithm",
            OidcError::UnknownKey => "unknown_key",
            OidcError::BadSignature => "bad_signature",
            OidcError::Expired => "expired",
            OidcError::NotYetValid => "not_yet_valid",
            OidcError::WrongIssuer => "wrong_issuer",
            OidcError::WrongAudience => "wrong_audience",
            OidcError::BadClaim { .. } => "bad_claim",
            OidcError::NoGrant { .. } => "no_grant",
            OidcError::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    fn from_jwt(error: &jsonwebtoken::errors::Error) -> OidcError {
        match error.kind() {
            // A key that does not parse cannot verify anything either.
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::Crypto(_) => OidcError::BadSignature,
            ErrorKind::ExpiredSignature => OidcError::Expired,
            ErrorKind::ImmatureSignature => OidcError::NotYetValid,
            ErrorKind::InvalidIssuer => OidcError::WrongIssuer,
            ErrorKind::InvalidAudience => OidcError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => OidcError::WrongIssuer,
                "aud" => OidcError::WrongAudience,
                _ => OidcError::BadClaim {
                    claim: claim.clone(),
                    problem: "is required, as a time in seconds".into(),
                },
            },
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName => OidcError::Algorithm,
            _ => OidcError::Malformed,
        }
    }
}

/// A key of the set that can verify tokens.
struct Key {
    kid: Option<String>,
    /// The algorithms this key verifies; never HMAC.
    algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
}

impl Key {
    /// The key, if it is a public signature key of a supported type.
    fn from_jwk(jwk: &Jwk) -> Option<Key> {
        let common = &jwk.common;
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|used| *used != PublicKeyUse::Signature)
            || common
                .key_operations
                .as_ref()
                .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            return None;
        }
        let (family, decoding): (&[Algorithm], _) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => (
                &RSA_ALGORITHMS,
                DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?,
            ),
            AlgorithmParameters::EllipticCurve(ec) => {
                let algorithm: &[Algorithm] = match ec.curve {
                    EllipticCurve::P256 => &[Algorithm::ES256],
                    EllipticCurve::P384 => &[Algorithm::ES384],
                    // P-521 has no JWT algorithm here (ring has no
                    // ES512), and Ed25519 is not an EC key.
                    EllipticCurve::P521 | EllipticCurve::Ed25519 => return None,
                };
                (
                    algorithm,
                    DecodingKey::from_ec_components(&ec.x, &ec.y).ok()?,
                )
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => (
                &[Algorithm::EdDSA],
                DecodingKey::from_ed_components(&okp.x).ok()?,
            ),
            AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
        };
        let algorithms = match common.key_algorithm {
            None => family.to_vec(),
            Some(declared) => {
                let declared = signature_algorithm(declared)?;
                if !family.contains(&declared) {
                    return None;
                }
                vec![declared]
            }
        };
        Some(Key {
            kid: common.key_id.clone(),
            algorithms,
            decoding,
        })
    }
}

/// The JWT signature algorithm a JWK's `alg` names; `None` for HMAC and
/// for encryption algorithms, which no token here may use.
fn signature_algorithm(declared: KeyAlgorithm) -> Option<Algorithm> {
    Some(match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The keys of a JWKS document that can verify tokens. Each entry is read
/// as a `Jwk` on its own rather than the whole as a `JwkSet`: a set may
/// also list keys of types or algorithms this verifier does not know (an
/// X25519 or ES512 key), and one of those must not void all the others.
fn usable_keys(document: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct KeySet {
        keys: Vec<Value>,
    }
    if document.len() > MAX_KEY_SET_BYTES {
        return Err("not a JWKS (larger than 1 MiB)".into());
    }
    let set: KeySet = serde_json::from_slice(document).map_err(|e| format!("not a JWKS ({e})"))?;
    let listed = set.keys.len();
    let keys: Vec<Key> = set
        .keys
        .into_iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry).ok())
        .filter_map(|jwk| Key::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "no usable key among the {listed} listed (RSA, EC P-256 or P-384, or Ed25519 signature keys)"
        ));
    }
    Ok(keys)
}

/// The key file, read at start only: a blocking read of a few KiB is fine
/// there. Reading stops past the size cap, whatever the file holds.
fn read_key_file(path: &Path) -> Result<Vec<Key>, String> {
    let named = |problem: String| format!("oidc.jwks_file {}: {problem}", path.display());
    let mut document = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_KEY_SET_BYTES as u64 + 1)
                .read_to_end(&mut document)
        })
        .map_err(|e| named(format!("cannot read ({e})")))?;
    usable_keys(&document).map_err(named)
}

/// The key set at `url`. The client follows no redirect (one could lead to
/// plain http), so the configured URL must be the final one.
async fn fetch_key_set(client: &reqwest::Client, url: &Url) -> Result<Vec<Key>, String> {
    let named = |problem: String| format!("oidc.jwks_url {url}: {problem}");
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| named(describe(e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(named(format!("HTTP {status}")));
    }
    let mut document = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| named(describe(e)))? {
        document.extend_from_slice(&chunk);
        // Enough to know it is too big: `usable_keys` refuses it.
        if document.len() > MAX_KEY_SET_BYTES {
            break;
        }
    }
    usable_keys(&document).map_err(named)
}

/// A request error with its causes: reqwest's own message ("error sending
/// request") does not say whether the connection was refused or timed out.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Where the keys come from.
enum Source {
    /// Read once, at start.
    File,
    /// Fetched at start, and again for an unknown `kid`.
    Url {
        url: Url,
        client: reqwest::Client,
        /// The earliest time the next fetch may start. Held across a fetch,
        /// so one runs at a time and those that waited see its keys.
        next_fetch: Mutex<Instant>,
    },
}

/// Verifies JWTs against the configured issuer's keys.
pub struct OidcVerifier {
    config: OidcConfig,
    source: Source,
    /// Replaced whole by a refetch. Readers hold it only to pick a key.
    keys: RwLock<Vec<Key>>,
}

impl OidcVerifier {
    /// Load the key set now (a file read or a fetch): an auth file whose
    /// keys cannot be had is refused like any other invalid file.
    pub async fn new(config: OidcConfig) -> Result<OidcVerifier, String> {
        config.validate().map_err(|problems| problems.join("; "))?;
        let (source, keys) = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => (Source::File, read_key_file(path)?),
            (None, Some(text)) => {
                let url = key_set_url(text).map_err(|e| format!("oidc.jwks_url: {e}"))?;
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("oidc.jwks_url {url}: {}", describe(e)))?;
                let keys = fetch_key_set(&client, &url).await?;
                let source = Source::Url {
                    url,
                    client,
                    next_fetch: Mutex::new(Instant::now() + REFETCH_EVERY),
                };
                (source, keys)
            }
            (None, None) => return Err("oidc: no key set (jwks_file or jwks_url)".into()),
        };
        Ok(OidcVerifier {
            config,
            source,
            keys: RwLock::new(keys),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The principal a JWT stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        // Refused before the key lookup, so that it cannot cause a refetch.
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(OidcError::Algorithm);
        }
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Unless required, a token without `iss` or `aud` would pass
        // those checks.
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| OidcError::from_jwt(&e))?
            .claims;
        // The library skips an `nbf` it cannot read as a time: a token that
        // sets one must set a time.
        if claims.get("nbf").is_some_and(|nbf| !nbf.is_number()) {
            return Err(OidcError::BadClaim {
                claim: "nbf".into(),
                problem: "must be a time in seconds".into(),
            });
        }
        self.principal(&claims)
    }

    /// The key to verify a token with, refetching the set once for an
    /// unknown `kid` when the source is a URL and the last fetch is old
    /// enough.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OidcError> {
        let found = pick(&self.keys.read().await, kid, alg);
        let Source::Url {
            url,
            client,
            next_fetch,
        } = &self.source
        else {
            return found;
        };
        // Without a kid there is no sign of a rotation to look for.
        if kid.is_none() || !matches!(found, Err(OidcError::UnknownKey)) {
            return found;
        }
        let mut next_fetch = next_fetch.lock().await;
        // Another verification may have fetched the set while this one
        // waited for the lock.
        let found = pick(&self.keys.read().await, kid, alg);
        if !matches!(found, Err(OidcError::UnknownKey)) || Instant::now() < *next_fetch {
            return found;
        }
        // Counted from the attempt, so a provider that is down is not
        // asked again at every token either.
        *next_fetch = Instant::now() + REFETCH_EVERY;
        match fetch_key_set(client, url).await {
            Ok(keys) => {
                tracing::info!(
                    keys = keys.len(),
                    "OIDC key set refetched for an unknown key id"
                );
                let found = pick(&keys, kid, alg);
                *self.keys.write().await = keys;
                found
            }
            Err(e) => {
                tracing::warn!("OIDC key set refetch failed, the previous keys stay: {e}");
                Err(OidcError::KeysUnavailable(e))
            }
        }
    }

    /// The principal, role and scope that verified claims stand for.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, OidcError> {
        let config = &self.config;
        let name = claims
            .get(&config.principal_claim)
            .and_then(Value::as_str)
            .filter(|name| is_principal_name(name))
            .ok_or_else(|| OidcError::BadClaim {
                claim: config.principal_claim.clone(),
                problem: format!(
                    "must be a string of 1 to {MAX_PRINCIPAL_CHARS} characters without control characters"
                ),
            })?;
        let name = format!("{OIDC_PREFIX}{name}");
        let values =
            role_values(claims.get(&config.roles_claim)).ok_or_else(|| OidcError::BadClaim {
                claim: config.roles_claim.clone(),
                problem: "must be a string or a list of strings".into(),
            })?;
        // `reduce` keeps the earlier grant on a tie: the first in file order.
        let grant = config
            .grants
            .iter()
            .filter(|grant| values.contains(&grant.value.as_str()))
            .reduce(|best, grant| if grant.role > best.role { grant } else { best })
            .ok_or_else(|| OidcError::NoGrant {
                principal: name.clone(),
                claim: config.roles_claim.clone(),
            })?;
        Ok(Principal {
            name,
            role: grant.role,
            scope: grant.scope.clone(),
            method: Method::Oidc,
        })
    }
}

/// The key for a token's `kid` and `alg`. A token without a `kid` can only
/// mean the key of a set that holds a single one.
fn pick(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OidcError> {
    let mut candidates = keys
        .iter()
        .filter(|key| match kid {
            Some(kid) => key.kid.as_deref() == Some(kid),
            None => keys.len() == 1,
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(OidcError::UnknownKey);
    }
    candidates
        .find(|key| key.algorithms.contains(&alg))
        .map(|key| key.decoding.clone())
        .ok_or(OidcError::Algorithm)
}

/// A principal name fit for the audit log and the UI.
fn is_principal_name(name: &str) -> bool {
    (1..=MAX_PRINCIPAL_CHARS).contains(&name.chars().count()) && !name.chars().any(char::is_control)
}

/// The values of the roles claim, or `None` when it is neither a string
/// nor a list of strings. An absent (or null) claim has no values, so it
/// grants nothing.
fn role_values(claim: Option<&Value>) -> Option<Vec<&str>> {
    match claim {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(value)) => Some(vec![value.as_str()]),
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://id.example.test";
    const AUDIENCE: &str = "phoenix-controller";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A signing key made for the test, and its public JWK.
    struct TestKey {
        kid: String,
        alg: Algorithm,
        encoding: EncodingKey,
        jwk: Value,
        public: Vec<u8>,
    }

    fn ec_key(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("read the P-256 key");
        // Uncompressed point: 0x04, then x and y of 32 bytes each.
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }),
            public: point.to_vec(),
        }
    }

    fn ed_key(kid: &str) -> TestKey {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate an Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("read the Ed25519 key");
        let public = pair.public_key().as_ref();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": b64(public)}),
            public: public.to_vec(),
        }
    }

    impl TestKey {
        fn sign(&self, claims: &Value) -> String {
            self.sign_as(Some(&self.kid), claims)
        }

        fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
            let mut header = Header::new(self.alg);
            header.kid = kid.map(str::to_string);
            encode(&header, claims, &self.encoding).expect("sign")
        }
    }

    fn key_set(keys: &[&TestKey]) -> String {
        json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()}).to_string()
    }

    /// Valid claims for `sub` with these groups.
    fn claims(sub: &str, groups: Value) -> Value {
        let now = get_current_timestamp();
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "groups": groups,
            "iat": now, "exp": now + 300,
        })
    }

    /// `claims` with one claim set to `value`, or removed when it is null.
    fn with(mut claims: Value, claim: &str, value: Value) -> Value {
        let map = claims.as_object_mut().expect("claims are an object");
        if value.is_null() {
            map.remove(claim);
        } else {
            map.insert(claim.to_string(), value);
        }
        claims
    }

    fn team(name: &str) -> Scope {
        Scope {
            labels: [("team".to_string(), name.to_string())].into(),
            templates: None,
        }
    }

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_file: None,
            jwks_url: None,
            principal_claim: "sub".into(),
            roles_claim: "groups".into(),
            grants: vec![
                Grant {
                    value: "everyone".into(),
                    role: Role::Viewer,
                    scope: None,
                },
                Grant {
                    value: "payments-ops".into(),
                    role: Role::Operator,
                    scope: Some(team("payments")),
                },
                Grant {
                    value: "search-ops".into(),
                    role: Role::Operator,
                    scope: Some(team("search")),
                },
                Grant {
                    value: "sre".into(),
                    role: Role::Admin,
                    scope: None,
                },
            ],
        }
    }

    /// A JWKS endpoint on loopback whose document can be swapped and its
    /// answers slowed down, counting the requests it answers.
    struct KeyServer {
        url: String,
        state: Arc<Endpoint>,
    }

    struct Endpoint {
        document: std::sync::Mutex<String>,
        hits: AtomicUsize,
        delay_ms: AtomicU64,
    }

    impl KeyServer {
        async fn start(document: String) -> KeyServer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local address");
            let state = Arc::new(Endpoint {
                document: std::sync::Mutex::new(document),
                hits: AtomicUsize::new(0),
                delay_ms: AtomicU64::new(0),
            });
            let app = Router::new()
                .route(
                    "/jwks",
                    get(|State(state): State<Arc<Endpoint>>| async move {
                        state.hits.fetch_add(1, Ordering::SeqCst);
                        let delay = state.delay_ms.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        state.document.lock().expect("document").clone()
                    }),
                )
                .with_state(state.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            KeyServer {
                url: format!("http://{addr}/jwks"),
                state,
            }
        }

        fn serve(&self, document: String) {
            *self.state.document.lock().expect("document") = document;
        }

        fn hits(&self) -> usize {
            self.state.hits.load(Ordering::SeqCst)
        }

        async fn verifier(&self) -> OidcVerifier {
            OidcVerifier::new(OidcConfig {
                jwks_url: Some(self.url.clone()),
                ..config()
            })
            .await
            .expect("the key set loads")
        }
    }

    /// As if the last fetch were a minute old.
    async fn allow_refetch(verifier: &OidcVerifier) {
        let Source::Url { next_fetch, .. } = &verifier.source else {
            panic!("not a URL source");
        };
        *next_fetch.lock().await = Instant::now();
    }

    /// A file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path = std::env::temp_dir()
                .join(format!("phoenix-oidc-{name}-{}.json", std::process::id()));
            std::fs::write(&path, contents).expect("write the temp file");
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The refusal of `token`, checking that its message does not repeat it.
    async fn refused(verifier: &OidcVerifier, token: &str) -> OidcError {
        let error = verifier.verify(token).await.expect_err("refused");
        assert!(!token.is_empty() && !error.to_string().contains(token));
        error
    }

    async fn granted(verifier: &OidcVerifier, token: &str) -> Principal {
        verifier.verify(token).await.expect("accepted")
    }

    #[tokio::test]
    async fn the_highest_granted_role_wins_with_its_first_grants_scope() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;

        let principal = granted(&verifier, &key.sign(&claims("alice", json!(["everyone"])))).await;
        assert_eq!(
            principal,
            Principal {
                name: "oidc:alice".into(),
                role: Role::Viewer,
                scope: None,
                method: Method::Oidc,
            }
        );

        // Two operator grants match: the first in file order gives the
        // scope, whatever the order of the claim.
        let token = key.sign(&claims(
            "bob",
            json!(["search-ops", "everyone", "payments-ops", "unrelated"]),
        ));
        let principal = granted(&verifier, &token).await;
        assert_eq!(principal.name, "oidc:bob");
        assert_eq!(principal.role, Role::Operator);
        assert_eq!(principal.scope, Some(team("payments")));

        let principal = granted(&verifier, &key.sign(&claims("bob", json!(["search-ops"])))).await;
        assert_eq!(principal.scope, Some(team("search")));

        // Admin beats operator, and brings the whole fleet.
        let token = key.sign(&claims("carol", json!(["payments-ops", "sre"])));
        let principal = granted(&verifier, &token).await;
        assert_eq!((principal.role, principal.scope), (Role::Admin, None));

        // A single string is one value.
        let principal = granted(&verifier, &key.sign(&claims("dan", json!("search-ops")))).await;
        assert_eq!(principal.role, Role::Operator);

        // Another principal claim.
        let verifier = OidcVerifier::new(OidcConfig {
            jwks_url: Some(server.url.clone()),
            principal_claim: "email".into(),
            ..config()
        })
        .await
        .expect("the key set loads");
        let token = key.sign(&with(
            claims("opaque-id", json!("everyone")),
            "email",
            json!("erin@example.test"),
        ));
        assert_eq!(
            granted(&verifier, &token).await.name,
            "oidc:erin@example.test"
        );
    }

    #[tokio::test]
    async fn expiry_is_required_and_checked_with_a_minute_of_leeway() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;
        let now = get_current_timestamp();
        let valid = claims("alice", json!("everyone"));

        let expired = key.sign(&with(valid.clone(), "exp", json!(now - 120)));
        assert_eq!(refused(&verifier, &expired).await, OidcError::Expired);
        assert_eq!(OidcError::Expired.reason(), "expired");
        let within_leeway = key.sign(&with(valid.clone(), "exp", json!(now - 30)));
        granted(&verifier, &within_leeway).await;

        let no_expiry = key.sign(&with(valid.clone(), "exp", Value::Null));
        let error = refused(&verifier, &no_expiry).await;
        assert_eq!(error.reason(), "bad_claim");
        assert!(error.to_string().contains("`exp`"), "{error}");
        let text_expiry = key.sign(&with(valid.clone(), "exp", json!("tomorrow")));
        assert_eq!(refused(&verifier, &text_expiry).await.reason(), "bad_claim");

        let early = key.sign(&with(valid.clone(), "nbf", json!(now + 300)));
        assert_eq!(refused(&verifier, &early).await, OidcError::NotYetValid);
        let nearly = key.sign(&with(valid.clone(), "nbf", json!(now + 30)));
        granted(&verifier, &nearly).await;
        let text_nbf = key.sign(&with(valid, "nbf", json!("now")));
        assert_eq!(refused(&verifier, &text_nbf).await.reason(), "bad_claim");
    }

    #[tokio::test]
    async fn issuer_and_audience_must_match() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;
        let valid = claims("alice", json!("everyone"));

        for iss in [json!("https://evil.example.test"), Value::Null, json!(7)] {
            let token = key.sign(&with(valid.clone(), "iss", iss.clone()));
            assert_eq!(
                refused(&verifier, &token).await,
                OidcError::WrongIssuer,
                "{iss}"
            );
        }
        for aud in [json!("another-app"), json!(["a", "b"]), Value::Null] {
            let token = key.sign(&with(valid.clone(), "aud", aud.clone()));
            assert_eq!(
                refused(&verifier, &token).await,
                OidcError::WrongAudience,
                "{aud}"
            );
        }
        let token = key.sign(&with(valid, "aud", json!(["another-app", AUDIENCE])));
        granted(&verifier, &token).await;
    }

    #[tokio::test]
    async fn a_token_signed_by_another_key_is_refused() {
        let key = ec_key("k1");
        let ed = ed_key("k2");
        let server = KeyServer::start(key_set(&[&key, &ed])).await;
        let verifier = server.verifier().await;
        let valid = claims("alice", json!("sre"));

        // Same kid, another private key.
        let impostor = ec_key("k1");
        assert_eq!(
            refused(&verifier, &impostor.sign(&valid)).await,
            OidcError::BadSignature
        );

        // A genuine signature over other claims.
        let genuine = key.sign(&claims("alice", json!("everyone")));
        let forged = key.sign(&valid);
        let mut parts: Vec<&str> = genuine.split('.').collect();
        parts[1] = forged.split('.').nth(1).expect("payload");
        assert_eq!(
            refused(&verifier, &parts.join(".")).await,
            OidcError::BadSignature
        );

        // An ES256 token naming the Ed25519 key: not its algorithm.
        let confused = key.sign_as(Some("k2"), &valid);
        assert_eq!(refused(&verifier, &confused).await, OidcError::Algorithm);

        // Both real keys work, and a token without a kid is not guessed
        // at when the set holds several keys.
        granted(&verifier, &key.sign(&valid)).await;
        granted(&verifier, &ed.sign(&valid)).await;
        assert_eq!(
            refused(&verifier, &key.sign_as(None, &valid)).await,
            OidcError::UnknownKey
        );
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_the_rotated_set_at_most_once_a_minute() {
        let old = ec_key("2024");
        let new = ec_key("2025");
        let server = KeyServer::start(key_set(&[&old])).await;
        let verifier = server.verifier().await;
        assert_eq!(server.hits(), 1);
        let valid = claims("alice", json!("everyone"));
        granted(&verifier, &old.sign(&valid)).await;

        // The provider rotates its key within a minute of the last fetch:
        // the new kid stays unknown, and the provider is not asked.
        server.serve(key_set(&[&new]));
        let token = new.sign(&valid);
        assert_eq!(refused(&verifier, &token).await, OidcError::UnknownKey);
        assert_eq!(server.hits(), 1);

        // A minute later, the unknown kid refetches the set.
        allow_refetch(&verifier).await;
        assert_eq!(granted(&verifier, &token).await.name, "oidc:alice");
        assert_eq!(server.hits(), 2);
        assert_eq!(
            refused(&verifier, &old.sign(&valid)).await,
            OidcError::UnknownKey
        );

        // Made-up kids right after do not reach the provider.
        for kid in ["a", "b", "c"] {
            let token = new.sign_as(Some(kid), &valid);
            assert_eq!(refused(&verifier, &token).await, OidcError::UnknownKey);
        }
        assert_eq!(server.hits(), 2);
        granted(&verifier, &token).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_unknown_kids_share_one_refetch() {
        let old = ec_key("old");
        let new = ec_key("new");
        let server = KeyServer::start(key_set(&[&old])).await;
        let verifier = Arc::new(server.verifier().await);
        server.serve(key_set(&[&old, &new]));
        allow_refetch(&verifier).await;
        // A slow provider: every task finds the kid unknown and queues for
        // the refetch that the first one started.
        server.state.delay_ms.store(300, Ordering::SeqCst);

        let token = new.sign(&claims("alice", json!("everyone")));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let verifier = verifier.clone();
                let token = token.clone();
                tokio::spawn(async move { verifier.verify(&token).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("accepted");
        }
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn a_failed_refetch_keeps_the_previous_keys() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;
        server.serve("<html>maintenance</html>".into());
        allow_refetch(&verifier).await;

        let valid = claims("alice", json!("everyone"));
        let error = refused(&verifier, &key.sign_as(Some("k2"), &valid)).await;
        assert_eq!(error.reason(), "keys_unavailable");
        assert!(error.to_string().contains("not a JWKS"), "{error}");
        assert_eq!(server.hits(), 2);
        granted(&verifier, &key.sign(&valid)).await;
    }

    #[tokio::test]
    async fn hmac_and_none_tokens_are_refused() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;
        let valid = claims("alice", json!("sre"));
        let hmac = |kid: Option<&str>, secret: &[u8]| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid.map(str::to_string);
            encode(&header, &valid, &EncodingKey::from_secret(secret)).expect("sign")
        };

        // Keyed with the public key, as in the classic confusion attack;
        // with the key's kid, without one (the set has a single key), and
        // with a new kid, which must not cause a refetch.
        allow_refetch(&verifier).await;
        for kid in [Some("k1"), None, Some("k9")] {
            let token = hmac(kid, &key.public);
            assert_eq!(
                refused(&verifier, &token).await,
                OidcError::Algorithm,
                "{kid:?}"
            );
        }
        assert_eq!(server.hits(), 1);

        let header = b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        let unsigned = format!("{header}.{}.", b64(valid.to_string().as_bytes()));
        assert_eq!(refused(&verifier, &unsigned).await, OidcError::Malformed);
    }

    #[tokio::test]
    async fn without_a_matching_grant_there_is_no_role() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;

        for groups in [json!(["nobody", "Sre"]), json!([]), Value::Null] {
            let token = key.sign(&with(claims("alice", json!(0)), "groups", groups.clone()));
            let error = refused(&verifier, &token).await;
            assert_eq!(
                error,
                OidcError::NoGrant {
                    principal: "oidc:alice".into(),
                    claim: "groups".into(),
                },
                "{groups}"
            );
            assert_eq!(error.reason(), "no_grant");
        }
        for groups in [json!(42), json!(["everyone", 7]), json!({"sre": true})] {
            let token = key.sign(&claims("alice", groups.clone()));
            let error = refused(&verifier, &token).await;
            assert_eq!(error.reason(), "bad_claim", "{groups}");
            assert!(error.to_string().contains("`groups`"), "{error}");
        }
    }

    #[tokio::test]
    async fn the_principal_claim_must_be_a_short_plain_string() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;
        let valid = claims("alice", json!("everyone"));

        let longest = "a".repeat(128);
        let token = key.sign(&with(valid.clone(), "sub", json!(longest)));
        assert_eq!(
            granted(&verifier, &token).await.name,
            format!("oidc:{longest}")
        );
        for sub in [
            Value::Null,
            json!(42),
            json!(""),
            json!("a".repeat(129)),
            json!("alice\nadmin"),
        ] {
            let token = key.sign(&with(valid.clone(), "sub", sub.clone()));
            let error = refused(&verifier, &token).await;
            assert_eq!(error.reason(), "bad_claim", "{sub}");
            assert!(error.to_string().contains("`sub`"), "{error}");
        }
        // `sub` is also a registered claim, which the library reads (as a
        // string) before this verifier sees it: a list there is refused
        // as a malformed token.
        let token = key.sign(&with(valid, "sub", json!(["alice"])));
        assert_eq!(refused(&verifier, &token).await, OidcError::Malformed);
    }

    #[tokio::test]
    async fn a_key_file_works_and_keys_of_no_use_are_skipped() {
        let key = ed_key("ed");
        let document = json!({"keys": [
            {"kty": "oct", "kid": "shared", "k": b64(b"a shared secret")},
            {"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[7; 32])},
            {"kty": "EC", "crv": "P-256", "kid": "es512", "alg": "ES512", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "wrap", "key_ops": ["wrapKey"], "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"something": "else"},
            key.jwk,
        ]});
        let file = TempFile::new("keys", document.to_string().as_bytes());
        let verifier = OidcVerifier::new(OidcConfig {
            jwks_file: Some(file.0.clone()),
            ..config()
        })
        .await
        .expect("the key file loads");
        assert_eq!(verifier.keys.read().await.len(), 1);

        let valid = claims("alice", json!("everyone"));
        granted(&verifier, &key.sign(&valid)).await;
        // The only key: a token without a kid means it.
        granted(&verifier, &key.sign_as(None, &valid)).await;
        // A file is not refetched.
        assert_eq!(
            refused(&verifier, &key.sign_as(Some("next"), &valid)).await,
            OidcError::UnknownKey
        );
        // The symmetric key's secret signs nothing acceptable.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("shared".into());
        let token = encode(
            &header,
            &valid,
            &EncodingKey::from_secret(b"a shared secret"),
        )
        .expect("sign");
        assert_eq!(refused(&verifier, &token).await, OidcError::Algorithm);
    }

    #[tokio::test]
    async fn new_names_the_source_that_failed() {
        let from_file = |file: &TempFile| OidcConfig {
            jwks_file: Some(file.0.clone()),
            ..config()
        };
        let from_url = |url: String| OidcConfig {
            jwks_url: Some(url),
            ..config()
        };

        let not_json = TempFile::new("not-json", b"-----BEGIN PUBLIC KEY-----");
        let error = OidcVerifier::new(from_file(&not_json))
            .await
            .err()
            .expect("refused");
        assert!(
            error.starts_with(&format!(
                "oidc.jwks_file {}: not a JWKS",
                not_json.0.display()
            )),
            "{error}"
        );

        let secret_only =
            TempFile::new("secret-only", br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#);
        let error = OidcVerifier::new(from_file(&secret_only))
            .await
            .err()
            .expect("refused");
        assert!(
            error.contains("no usable key among the 1 listed"),
            "{error}"
        );

        let mut huge = br#"{"keys":[],"padding":""#.to_vec();
        huge.resize(MAX_KEY_SET_BYTES + 10, b' ');
        let huge = TempFile::new("huge", &huge);
        let error = OidcVerifier::new(from_file(&huge))
            .await
            .err()
            .expect("refused");
        assert!(error.contains("larger than 1 MiB"), "{error}");

        let missing = std::env::temp_dir().join("phoenix-oidc-no-such-file.json");
        let error = OidcVerifier::new(OidcConfig {
            jwks_file: Some(missing.clone()),
            ..config()
        })
        .await
        .err()
        .expect("refused");
        assert!(
            error.starts_with(&format!(
                "oidc.jwks_file {}: cannot read",
                missing.display()
            )),
            "{error}"
        );

        // A port nothing listens on.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let url = format!("http://127.0.0.1:{port}/jwks");
        let error = OidcVerifier::new(from_url(url.clone()))
            .await
            .err()
            .expect("refused");
        assert!(
            error.starts_with(&format!("oidc.jwks_url {url}: ")),
            "{error}"
        );
        assert!(error.to_lowercase().contains("refused"), "{error}");

        let server = KeyServer::start(" ".repeat(MAX_KEY_SET_BYTES + 10)).await;
        let error = OidcVerifier::new(from_url(server.url.clone()))
            .await
            .err()
            .expect("refused");
        assert_eq!(
            error,
            format!(
                "oidc.jwks_url {}: not a JWKS (larger than 1 MiB)",
                server.url
            )
        );
        let url = server.url.replace("/jwks", "/nothing-here");
        let error = OidcVerifier::new(from_url(url.clone()))
            .await
            .err()
            .expect("refused");
        assert_eq!(error, format!("oidc.jwks_url {url}: HTTP 404 Not Found"));

        let error = OidcVerifier::new(from_url("http://id.example.test/jwks".into()))
            .await
            .err()
            .expect("refused");
        assert!(
            error.starts_with("oidc.jwks_url: must be https://"),
            "{error}"
        );
    }

    #[test]
    fn validate_names_each_problem() {
        let from_file = || OidcConfig {
            jwks_file: Some("/etc/phoenix/jwks.json".into()),
            ..config()
        };
        let problems = |config: OidcConfig| config.validate().expect_err("invalid");
        assert_eq!(from_file().validate(), Ok(()));

        assert_eq!(
            problems(OidcConfig {
                issuer: " ".into(),
                audience: String::new(),
                ..from_file()
            }),
            [
                "oidc.issuer: must not be empty",
                "oidc.audience: must not be empty"
            ]
        );
        assert_eq!(
            problems(OidcConfig {
                jwks_url: Some("https://id.example.test/jwks".into()),
                ..from_file()
            }),
            ["oidc.jwks_file, oidc.jwks_url: give one of them, not both"]
        );
        assert_eq!(
            problems(config()),
            ["oidc.jwks_file, oidc.jwks_url: one of them is required"]
        );
        assert_eq!(
            problems(OidcConfig {
                jwks_file: Some(PathBuf::new()),
                ..config()
            }),
            ["oidc.jwks_file: must not be empty"]
        );

        let url = |url: &str| OidcConfig {
            jwks_url: Some(url.into()),
            ..config()
        };
        for good in [
            "https://id.example.test/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.0.1/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:1/jwks",
        ] {
            assert_eq!(url(good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "http://id.example.test/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.example.test/jwks",
            "ftp://127.0.0.1/jwks",
            "file:///etc/jwks.json",
        ] {
            let found = problems(url(bad));
            assert_eq!(found.len(), 1, "{bad}");
            assert!(
                found[0].starts_with("oidc.jwks_url: must be https://"),
                "{bad}: {found:?}"
            );
        }
        let found = problems(url("id.example.test/jwks"));
        assert!(
            found[0].starts_with("oidc.jwks_url: not a URL"),
            "{found:?}"
        );

        assert_eq!(
            problems(OidcConfig {
                principal_claim: String::new(),
                roles_claim: String::new(),
                ..from_file()
            }),
            [
                "oidc.principal_claim: must not be empty",
                "oidc.roles_claim: must not be empty"
            ]
        );
        assert_eq!(
            problems(OidcConfig {
                grants: Vec::new(),
                ..from_file()
            }),
            ["oidc.grants: at least one grant is required"]
        );

        let mut grants = config().grants;
        grants[1].value = String::new();
        grants[3].scope = Some(team("payments"));
        assert_eq!(
            problems(OidcConfig {
                grants,
                ..from_file()
            }),
            [
                "oidc.grants[1].value: must not be empty",
                "oidc.grants[3].scope: an admin has no scope"
            ]
        );
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused() {
        let key = ec_key("k1");
        let server = KeyServer::start(key_set(&[&key])).await;
        let verifier = server.verifier().await;
        let token = key.sign(&claims("alice", json!("everyone")));
        let (signed, signature) = token.rsplit_once('.').expect("three parts");
        let header = signed.split('.').next().expect("header");

        let not_an_object = key.sign(&json!(["alice", "everyone"]));
        let oversized = format!("{header}.{}.{signature}", "A".repeat(MAX_TOKEN_BYTES));
        for bad in [
            "not a token",
            "a.b.c",
            "a.b",
            signed,
            &format!("{token}.extra"),
            &not_an_object,
            &oversized,
        ] {
            assert_eq!(
                refused(&verifier, bad).await,
                OidcError::Malformed,
                "{bad:.40}"
            );
        }
    }
}
