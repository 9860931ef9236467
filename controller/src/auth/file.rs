//! The auth file (`--auth-file`): named principals, each with a role, an
//! optional scope and one or more token hashes, and optionally an `oidc:`
//! section. Tokens are never stored in clear: the file holds
//! `sha256:<hex>` of each (`phoenix-controller hash-token` makes one), so a
//! leaked file does not leak a credential. Several hashes per principal let
//! a token be rotated without downtime: add the new one, reload, move the
//! clients, remove the old one.
//!
//! ```yaml
//! principals:
//!   - name: ana
//!     role: admin
//!     tokens: ["sha256:9f86d0…"]
//!   - name: payments-ci
//!     role: operator
//!     scope: {labels: {team: payments}, templates: [lean]}
//!     tokens: ["sha256:…", "sha256:…"]
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::oidc::OidcConfig;
use super::principal::{Method, Principal, Role, Scope, system};

/// Tokens of the auth file must be at least this long: a bearer shorter
/// than this is refused before any lookup, and `hash-token` will not hash
/// one. 24 characters of a random alphabet are beyond guessing; `hash-token
/// --generate` makes 43.
pub const MIN_TOKEN_LEN: usize = 24;
/// Longest principal name (it is written into every audit entry).
const MAX_NAME: usize = 64;
const HASH_PREFIX: &str = "sha256:";

/// A token's SHA-256. Tokens are long random secrets, so a plain (unsalted)
/// hash is enough: there is no dictionary to try.
pub type TokenHash = [u8; 32];

pub fn hash_token(token: &[u8]) -> TokenHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `sha256:<hex>`, the form the file holds.
pub fn format_hash(hash: &TokenHash) -> String {
    format!("{HASH_PREFIX}{}", phoenix_processors::hash::hex(hash))
}

fn parse_hash(text: &str) -> Option<TokenHash> {
    let hex = text.trim().strip_prefix(HASH_PREFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A new random token: 32 bytes from the system's generator, URL-safe.
pub fn generate_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_string())?;
    // base64url without padding: 43 characters, all header-safe.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(43);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    Ok(out)
}

/// Why a token cannot be used in the auth file.
pub fn check_new_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token has {} characters; at least {MIN_TOKEN_LEN} are required",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII without spaces".into());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    principals: Vec<PrincipalDoc>,
    #[serde(default)]
    oidc: Option<OidcConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalDoc {
    name: String,
    role: Role,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    tokens: Vec<String>,
}

/// A checked auth file.
#[derive(Debug, Default)]
pub struct AuthFile {
    pub by_hash: HashMap<TokenHash, Arc<Principal>>,
    pub principals: Vec<Arc<Principal>>,
    pub oidc: Option<OidcConfig>,
}

impl AuthFile {
    pub fn read(path: &Path) -> Result<AuthFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        AuthFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every problem of the file, joined; a file with any problem is refused
    /// whole.
    pub fn parse(text: &str) -> Result<AuthFile, String> {
        let doc: FileDoc = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let mut errors = Vec::new();
        let mut out = AuthFile::default();
        let mut names = BTreeSet::new();
        for (i, p) in doc.principals.into_iter().enumerate() {
            let at = format!("principals[{i}] ({:?})", p.name);
            if let Err(e) = check_name(&p.name) {
                errors.push(format!("{at}.name: {e}"));
            }
            if !names.insert(p.name.clone()) {
                errors.push(format!("{at}.name: a second principal of this name"));
            }
            if let Some(scope) = &p.scope {
                errors.extend(
                    check_scope(scope, p.role)
                        .into_iter()
                        .map(|e| format!("{at}.scope: {e}")),
                );
            }
            if p.tokens.is_empty() {
                errors.push(format!(
                    "{at}.tokens: at least one hash is required (phoenix-controller hash-token)"
                ));
            }
            let principal = Arc::new(Principal {
                name: p.name,
                role: p.role,
                scope: p.scope,
                method: Method::Token,
            });
            for (j, t) in p.tokens.iter().enumerate() {
                match parse_hash(t) {
                    None => errors.push(format!(
                        "{at}.tokens[{j}]: not a token hash: expected sha256:<64 hex digits> \
                         (phoenix-controller hash-token makes one; tokens are never stored in clear)"
                    )),
                    Some(h) => {
                        if let Some(other) = out.by_hash.insert(h, principal.clone()) {
                            errors.push(format!(
                                "{at}.tokens[{j}]: the same token is also {:?}'s",
                                other.name
                            ));
                        }
                    }
                }
            }
            out.principals.push(principal);
        }
        if let Some(oidc) = &doc.oidc
            && let Err(es) = oidc.validate()
        {
            errors.extend(es);
        }
        if out.principals.is_empty() && doc.oidc.is_none() {
            errors.push("no principals and no oidc section: nobody could sign in".into());
        }
        out.oidc = doc.oidc;
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("; "))
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} characters"));
    }
    if system::is_reserved(name) {
        return Err(
            "reserved for the controller's own actions (and no name may contain ':')".into(),
        );
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
    {
        return Err("only letters, digits and . _ @ - are allowed".into());
    }
    Ok(())
}

/// The problems of a scope given to a principal (or an OIDC grant).
pub fn check_scope(scope: &Scope, role: Role) -> Vec<String> {
    let mut errors = Vec::new();
    if role == Role::Admin {
        errors.push("an admin has no scope (give the role operator or viewer)".into());
    }
    for (k, v) in &scope.labels {
        if k.is_empty() || v.is_empty() {
            errors.push(format!(
                "labels: {k:?}={v:?}: keys and values must not be empty"
            ));
        }
    }
    if let Some(t) = &scope.templates
        && t.iter().any(|n| n.is_empty())
    {
        errors.push("templates: a template name is empty".into());
    }
    if scope.labels.is_empty() && scope.templates.is_none() {
        errors.push("the scope limits nothing: give labels, templates or both".into());
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(token: &str) -> String {
        format_hash(&hash_token(token.as_bytes()))
    }

    #[test]
    fn a_file_maps_token_hashes_to_principals() {
        let text = format!(
            "principals:\n\
             - {{name: ana, role: admin, tokens: [\"{}\"]}}\n\
             - name: pay\n  role: operator\n  scope: {{labels: {{team: payments}}}}\n  tokens: [\"{}\", \"{}\"]\n",
            hash_of("ana-token-0123456789abcdef"),
            hash_of("pay-token-old-0123456789ab"),
            hash_of("pay-token-new-0123456789ab"),
        );
        let file = AuthFile::parse(&text).unwrap();
        let who = |t: &str| {
            file.by_hash
                .get(&hash_token(t.as_bytes()))
                .map(|p| p.name.clone())
        };
        assert_eq!(who("ana-token-0123456789abcdef").as_deref(), Some("ana"));
        assert_eq!(who("pay-token-old-0123456789ab").as_deref(), Some("pay"));
        assert_eq!(who("pay-token-new-0123456789ab").as_deref(), Some("pay"));
        assert_eq!(who("nobody-0123456789abcdefgh"), None);
        let pay = &file.principals[1];
        assert_eq!(pay.role, Role::Operator);
        assert_eq!(
            pay.scope.as_ref().unwrap().describe_labels(),
            "team=payments"
        );
    }

    #[test]
    fn every_problem_is_named() {
        let h = hash_of("shared-token-0123456789abcdef");
        let text = format!(
            "principals:\n\
             - {{name: controller, role: admin, tokens: [\"{h}\"]}}\n\
             - {{name: b, role: admin, scope: {{labels: {{team: x}}}}, tokens: [\"{h}\"]}}\n\
             - {{name: b, role: viewer, tokens: [\"s3cret-in-clear\"]}}\n\
             - {{name: 'd e', role: viewer, tokens: []}}\n"
        );
        let err = AuthFile::parse(&text).unwrap_err();
        for needle in [
            "principals[0] (\"controller\").name: reserved",
            "principals[1] (\"b\").scope: an admin has no scope",
            "principals[1] (\"b\").tokens[0]: the same token is also \"controller\"'s",
            "principals[2] (\"b\").name: a second principal",
            "principals[2] (\"b\").tokens[0]: not a token hash",
            "principals[3] (\"d e\").name: only letters",
            "principals[3] (\"d e\").tokens: at least one hash",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from {err}");
        }
        assert!(!err.contains("s3cret-in-clear"), "{err}");
        assert!(
            AuthFile::parse("principals: []\n")
                .unwrap_err()
                .contains("nobody could sign in")
        );
        assert!(
            AuthFile::parse("principal: []\n")
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(AuthFile::parse("principals:\n- {name: a, role: root, tokens: []}\n").is_err());
    }

    #[test]
    fn hashes_round_trip_and_tokens_are_long_and_random() {
        let h = hash_token(b"x");
        assert_eq!(parse_hash(&format_hash(&h)), Some(h));
        assert_eq!(parse_hash("sha256:abc"), None);
        assert_eq!(
            parse_hash(&format_hash(&h).replace("sha256:", "md5:")),
            None
        );
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(check_new_token(&a).is_ok());
        assert!(
            check_new_token("short")
                .unwrap_err()
                .contains("at least 24")
        );
    }
}
