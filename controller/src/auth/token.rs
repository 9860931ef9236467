//! Bearer tokens: the single `--api-token`, and the token agents present.
//! A token comes from a flag, an environment variable or a file (the file
//! keeps it out of `ps` and shell history).

use std::fmt;
use std::path::Path;

/// Shorter tokens are accepted with a warning: guessable secrets are the
/// operator's choice, but not a silent one.
pub const RECOMMENDED_MIN_LEN: usize = 16;

/// A secret token. Never printed.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token must fit in an HTTP header and survive copy/paste: visible
    /// ASCII, no spaces.
    pub fn new(text: &str) -> Result<Token, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("the token is empty".into());
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII without spaces".into());
        }
        Ok(Token(t.as_bytes().to_vec()))
    }

    /// Read a token from a file (surrounding whitespace, such as the final
    /// newline, is ignored).
    pub fn from_file(path: &Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Token::new(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The token from a flag (or its environment variable) or a file; both
    /// is ambiguous and refused.
    pub fn from_flag_or_file(
        name: &str,
        value: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<Token>, String> {
        match (value, file) {
            (Some(_), Some(_)) => Err(format!("give --{name} or --{name}-file, not both")),
            (Some(v), None) => Token::new(v)
                .map(Some)
                .map_err(|e| format!("--{name}: {e}")),
            (None, Some(p)) => Token::from_file(p).map(Some),
            (None, None) => Ok(None),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an `authorization` header value is `Bearer <this token>`.
    pub fn matches_bearer(&self, header: Option<&[u8]>) -> bool {
        header
            .and_then(strip_bearer)
            .is_some_and(|presented| self.matches(presented))
    }

    /// Whether `presented` is this token. The comparison takes the same
    /// time wherever the first difference is, so the token cannot be
    /// guessed byte by byte from response times.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(presented, &self.0)
    }
}

/// The credentials of `Bearer <credentials>` (scheme case-insensitive).
pub(super) fn strip_bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_matching() {
        let t = Token::new("s3cret-token\n").unwrap();
        assert!(t.matches_bearer(Some(b"Bearer s3cret-token")));
        assert!(t.matches_bearer(Some(b"bearer s3cret-token")));
        assert!(!t.matches_bearer(Some(b"Bearer s3cret-tokem")));
        assert!(!t.matches_bearer(Some(b"Bearer s3cret")));
        assert!(!t.matches_bearer(Some(b"Basic s3cret-token")));
        assert!(!t.matches_bearer(Some(b"Bearer")));
        assert!(!t.matches_bearer(Some(b"")));
        assert!(!t.matches_bearer(None));
        assert!(Token::new("  ").is_err());
        assert!(Token::new("two words").is_err());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn flag_or_file() {
        assert!(
            Token::from_flag_or_file("api-token", None, None)
                .unwrap()
                .is_none()
        );
        assert!(
            Token::from_flag_or_file("api-token", Some("x"), Some(Path::new("/nope"))).is_err()
        );
        let err = Token::from_flag_or_file("api-token", None, Some(Path::new("/nonexistent/t")))
            .unwrap_err();
        assert!(err.contains("/nonexistent/t"), "{err}");
    }
}
