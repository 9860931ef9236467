//! OIDC: bearer JWTs signed by an identity provider, verified against its
//! key set (JWKS, from a file or a URL), with issuer, audience and expiry
//! checked, and a claim mapped to a role and a scope.
//!
//! STUB: the interface the rest of the controller uses; the verifier is
//! being built.

use std::path::PathBuf;

use serde::Deserialize;

use super::principal::{Principal, Role, Scope};

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
        Ok(())
    }
}

/// Why a JWT was not accepted. `reason` is a bounded label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("the token is not a valid JWT")]
    Malformed,
}

impl OidcError {
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Malformed => "malformed",
        }
    }
}

/// Verifies JWTs against the configured issuer's keys.
pub struct OidcVerifier {
    config: OidcConfig,
}

impl OidcVerifier {
    /// Load the key set now (a file read or a fetch): an auth file whose
    /// keys cannot be had is refused like any other invalid file.
    pub async fn new(config: OidcConfig) -> Result<OidcVerifier, String> {
        Ok(OidcVerifier { config })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The principal a JWT stands for.
    pub async fn verify(&self, _token: &str) -> Result<Principal, OidcError> {
        Err(OidcError::Malformed)
    }
}
