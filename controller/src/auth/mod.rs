//! Who may use the API, and as whom. Principals come from an auth file
//! (`--auth-file`: named principals with roles, scopes and hashed tokens,
//! and optionally OIDC) or from the single `--api-token` (one admin).
//! Agents present their own token on the gRPC port ([`Token`]).

pub mod oidc;
pub mod principal;
mod token;

pub use principal::{Method, Permission, Principal, Role, Scope};
pub use token::{RECOMMENDED_MIN_LEN, Token};
