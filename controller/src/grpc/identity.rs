//! Who a session is: the enrollment token, the agent's own credential and,
//! with `--client-ca`, its client certificate.
//!
//! A credential is 256 random bits, sent to the agent once (in an
//! `Enrollment` message) and kept by the controller only as its SHA-256:
//! the store, a backup or a log line never holds one that opens a session.
//! A credential is looked up by its hash, so the controller knows which
//! instance id it belongs to before it reads the Hello.

use ring::rand::SecureRandom;

/// The gRPC metadata key carrying the agent's credential.
pub const CREDENTIAL_METADATA: &str = "x-phoenix-agent-credential";

/// Longest credential looked up; ours are 64 characters.
const MAX_CREDENTIAL_LEN: usize = 256;

/// A new credential (hex), or `None` when the OS has no randomness to give:
/// a guessable credential is worse than none.
pub fn new_credential() -> Option<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(phoenix_processors::hash::hex(&bytes))
}

/// The SHA-256 (hex) a credential is stored and looked up as, or `None`
/// for a value no credential can be (empty, oversized).
pub fn credential_hash(presented: &[u8]) -> Option<String> {
    let presented = presented.trim_ascii();
    if presented.is_empty() || presented.len() > MAX_CREDENTIAL_LEN {
        return None;
    }
    Some(phoenix_processors::hash::hex(
        ring::digest::digest(&ring::digest::SHA256, presented).as_ref(),
    ))
}

/// The subject Common Name of a DER certificate, when it has exactly one
/// that is a text string. The certificate was already verified against
/// `--client-ca` by the TLS handshake; this only reads a name from it, and
/// anything it cannot read is "no name" (which matches no instance id).
pub fn certificate_common_name(der: &[u8]) -> Option<String> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    // [0] EXPLICIT version, when present.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut subject, _) = expect(tbs, SEQUENCE)?;
    let mut found = None;
    while !subject.is_empty() {
        let (mut rdn, rest) = expect(subject, SET)?;
        subject = rest;
        while !rdn.is_empty() {
            let (attribute, rest) = expect(rdn, SEQUENCE)?;
            rdn = rest;
            let (oid, value) = expect(attribute, OID)?;
            if oid != COMMON_NAME_OID {
                continue;
            }
            let (tag, text, _) = tlv(value)?;
            if !matches!(tag, UTF8_STRING | PRINTABLE_STRING | IA5_STRING) || found.is_some() {
                return None;
            }
            found = Some(std::str::from_utf8(text).ok()?.to_string());
        }
    }
    found
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
/// 2.5.4.3 (id-at-commonName).
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        // High tag numbers appear nowhere on the path read here.
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(n)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (content, after) = rest.split_at_checked(len)?;
    Some((tag, content, after))
}

/// One DER element with tag `tag`: its content and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = tlv(input)?;
    (found == tag).then_some((content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    #[test]
    fn the_common_name_is_read_from_real_certificates() {
        assert_eq!(
            certificate_common_name(&fixture("agent.pem")).as_deref(),
            Some("test-agent")
        );
        assert_eq!(
            certificate_common_name(&fixture("server.pem")).as_deref(),
            Some("localhost")
        );
    }

    #[test]
    fn broken_der_has_no_name_and_never_panics() {
        let der = fixture("agent.pem");
        for cut in 0..der.len() {
            let _ = certificate_common_name(&der[..cut]);
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = certificate_common_name(&flipped);
            flipped[i] ^= 0xff;
        }
        assert_eq!(certificate_common_name(&[]), None);
        assert_eq!(certificate_common_name(&[0x30, 0x84, 0xff, 0xff]), None);
    }

    #[test]
    fn credentials_are_random_and_hashed() {
        let a = new_credential().unwrap();
        let b = new_credential().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let h = credential_hash(a.as_bytes()).unwrap();
        assert_eq!(h.len(), 64);
        assert_ne!(h, a);
        assert_eq!(credential_hash(format!(" {a}\n").as_bytes()), Some(h));
        assert_eq!(credential_hash(b""), None);
        assert_eq!(credential_hash(&[b'x'; 300]), None);
    }
}
