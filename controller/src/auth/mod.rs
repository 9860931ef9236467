//! Who may use the API, and as whom. Principals come from an auth file
//! (`--auth-file`: named principals with roles, scopes and hashed tokens,
//! and optionally OIDC) or from the single `--api-token` (one admin named
//! `admin`). Agents present their own token on the gRPC port ([`Token`]).
//!
//! The [`Authenticator`] turns an `Authorization` header into a
//! [`Principal`] or a [`Failure`]; the API's middleware decides what the
//! principal may do with the route's [`Permission`].

pub mod file;
mod limiter;
pub mod oidc;
pub mod principal;
pub mod reload;
mod token;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use principal::{Method, Permission, Principal, Role, Scope, system};
pub use token::{RECOMMENDED_MIN_LEN, Token};

use file::AuthFile;
use limiter::FailureLimiter;
use oidc::OidcVerifier;

/// Where principals come from.
#[derive(Debug, Clone)]
pub enum AuthSource {
    /// `--api-token`: one admin, named `admin`.
    SingleToken(Token),
    /// `--auth-file`, re-read on SIGHUP and when it changes.
    File(PathBuf),
}

/// Why a request is not authenticated. `reason` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A credential that is not valid; the reason never holds it.
    Invalid {
        reason: &'static str,
        detail: String,
    },
    /// Too many failures from this address: retry after this long.
    Limited(Duration),
}

impl Failure {
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Invalid { reason, .. } => reason,
            Failure::Limited(_) => "rate_limited",
        }
    }
}

/// What one load of the source gave.
struct Loaded {
    /// SHA-256 of each token → its principal.
    tokens: std::collections::HashMap<file::TokenHash, Arc<Principal>>,
    /// The single-token mode's token, compared in constant time.
    single: Option<(Token, Arc<Principal>)>,
    oidc: Option<Arc<OidcVerifier>>,
    principals: usize,
}

/// What a reload found, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSummary {
    pub principals: usize,
    pub oidc: bool,
}

pub struct Authenticator {
    source: AuthSource,
    loaded: RwLock<Arc<Loaded>>,
    limiter: FailureLimiter,
}

impl Authenticator {
    /// Load the source; an invalid auth file (or OIDC keys that cannot be
    /// fetched) refuses the start.
    pub async fn new(source: AuthSource) -> Result<Authenticator, String> {
        let loaded = load(&source).await?;
        Ok(Authenticator {
            source,
            loaded: RwLock::new(Arc::new(loaded)),
            limiter: FailureLimiter::default(),
        })
    }

    /// The auth file, when principals come from one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match &self.source {
            AuthSource::File(p) => Some(p),
            AuthSource::SingleToken(_) => None,
        }
    }

    pub fn summary(&self) -> LoadSummary {
        let l = self.current();
        LoadSummary {
            principals: l.principals,
            oidc: l.oidc.is_some(),
        }
    }

    /// Read the source again. On any error the principals in force stay,
    /// and the error says why.
    pub async fn reload(&self) -> Result<LoadSummary, String> {
        let loaded = load(&self.source).await?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(self.summary())
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The principal behind an `Authorization` header value. Failures are
    /// counted per `client`; an address over its limit is refused before
    /// its credential is looked at.
    pub async fn authenticate(
        &self,
        header: Option<&[u8]>,
        client: IpAddr,
    ) -> Result<Arc<Principal>, Failure> {
        let now = Instant::now();
        self.limiter.check(client, now).map_err(Failure::Limited)?;
        let result = self.verify(header).await;
        if matches!(result, Err(Failure::Invalid { .. })) {
            self.limiter.failed(client, now);
        }
        result
    }

    async fn verify(&self, header: Option<&[u8]>) -> Result<Arc<Principal>, Failure> {
        let Some(header) = header else {
            return Err(Failure::Missing);
        };
        let invalid = |reason: &'static str, detail: &str| Failure::Invalid {
            reason,
            detail: detail.to_string(),
        };
        let Some(presented) = token::strip_bearer(header) else {
            return Err(invalid(
                "not_bearer",
                "the Authorization header is not `Bearer <token>`",
            ));
        };
        let loaded = self.current();
        if let Some((token, principal)) = &loaded.single {
            return if token.matches(presented) {
                Ok(principal.clone())
            } else {
                Err(invalid("unknown_token", "the token is not valid"))
            };
        }
        if let Some(verifier) = &loaded.oidc
            && looks_like_jwt(presented)
        {
            let text = std::str::from_utf8(presented)
                .map_err(|_| invalid("malformed", "the token is not valid"))?;
            return verifier
                .verify(text)
                .await
                .map(Arc::new)
                .map_err(|e| Failure::Invalid {
                    reason: e.reason(),
                    detail: e.to_string(),
                });
        }
        if presented.len() < file::MIN_TOKEN_LEN {
            return Err(invalid(
                "short_token",
                "the token is shorter than the minimum; it cannot be valid",
            ));
        }
        loaded
            .tokens
            .get(&file::hash_token(presented))
            .cloned()
            .ok_or_else(|| invalid("unknown_token", "the token is not valid"))
    }
}

/// `header.payload.signature`, each base64url: tokens of the auth file
/// never have dots.
fn looks_like_jwt(token: &[u8]) -> bool {
    token.iter().filter(|b| **b == b'.').count() == 2
}

async fn load(source: &AuthSource) -> Result<Loaded, String> {
    match source {
        AuthSource::SingleToken(token) => Ok(Loaded {
            tokens: Default::default(),
            single: Some((
                token.clone(),
                Arc::new(Principal {
                    name: "admin".into(),
                    role: Role::Admin,
                    scope: None,
                    method: Method::Token,
                }),
            )),
            oidc: None,
            principals: 1,
        }),
        AuthSource::File(path) => {
            let path = path.clone();
            let parsed = crate::blocking(move || AuthFile::read(&path))
                .await
                .map_err(|e| format!("reading the auth file failed: {e}"))??;
            let oidc = match parsed.oidc {
                Some(config) => Some(Arc::new(
                    OidcVerifier::new(config)
                        .await
                        .map_err(|e| format!("oidc: {e}"))?,
                )),
                None => None,
            };
            Ok(Loaded {
                principals: parsed.principals.len(),
                tokens: parsed.by_hash,
                single: None,
                oidc,
            })
        }
    }
}
