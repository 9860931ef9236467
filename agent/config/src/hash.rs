//! A config's identity: the SHA-256 of its text.

/// SHA-256 of a config text, as lowercase hex: the config's identity in
/// logs, `/healthz`, `/metrics` and the controller protocol.
pub fn config_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    phoenix_processors::hash::hex(digest.as_ref())
}

pub use phoenix_processors::hash::short_hash;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        // SHA-256 of the empty string, as published in FIPS 180-2 examples.
        assert_eq!(
            config_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(short_hash(&config_hash("")), "e3b0c44298fc");
    }
}
