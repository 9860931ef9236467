//! Small, stable, non-cryptographic hashes. Stable means: the same input
//! gives the same output in every process and every release, which
//! `std::collections::hash_map::DefaultHasher` does not promise. That is
//! what makes sampling decisions and hashed attribute values repeatable
//! across agent restarts and hosts. The agent's accounting (series keys)
//! and its process identities use the same functions: one FNV, one mixer.

use std::hash::{BuildHasherDefault, Hasher};

use crate::model::{Attributes, Value};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit. Not cryptographic: a hashed pid or user name can be
/// recovered by trying every candidate, so hashing pseudonymises
/// high-cardinality values, it does not protect secrets.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_continue(FNV_OFFSET, bytes)
}

pub fn fnv1a_continue(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The splitmix64 finaliser: spreads every input bit over the output, so
/// that `mix(x) < threshold` is a fair coin even for sequential inputs.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Feed one attribute value into an FNV state, tagged by type so that the
/// string "1" and the integer 1 differ.
pub fn hash_value(h: u64, value: &Value) -> u64 {
    match value {
        Value::Str(s) => fnv1a_continue(fnv1a_continue(h, b"s"), s.as_bytes()),
        Value::Int(v) => fnv1a_continue(fnv1a_continue(h, b"i"), &v.to_le_bytes()),
        Value::Double(v) => fnv1a_continue(fnv1a_continue(h, b"d"), &v.to_bits().to_le_bytes()),
        Value::Bool(v) => fnv1a_continue(h, if *v { b"T" } else { b"F" }),
    }
}

/// A stable hash of a whole attribute set: the identity of a resource that
/// has none of its own (an aggregate group keeps its attributes from one
/// interval to the next, so this follows it).
pub fn hash_attributes(attributes: &Attributes) -> u64 {
    hash_attributes_from(FNV_OFFSET, attributes)
}

/// [`hash_attributes`] continuing from the FNV state `h`, to key a set by
/// what came before it (a series: resource, metric name, point attributes).
pub fn hash_attributes_from(mut h: u64, attributes: &Attributes) -> u64 {
    for kv in attributes.iter() {
        h = fnv1a_continue(h, kv.key.as_bytes());
        h = fnv1a_continue(h, &[0xff]);
        h = hash_value(h, &kv.value);
        h = fnv1a_continue(h, &[0xfe]);
    }
    h
}

/// Lowercase hex of `bytes`: digests, ids and tokens as text.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The first 12 characters of a hash, as logs, messages and tables show a
/// config's SHA-256 (a shorter text passes through whole).
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Hasher for maps keyed by process identities, which are already hashes:
/// one multiply-and-mix instead of SipHash, and deterministic (no random
/// seed), so iteration order can never make output differ between runs.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a_continue(self.0 ^ FNV_OFFSET, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}

pub type BuildIdentityHasher = BuildHasherDefault<IdentityHasher>;
pub type IdMap<V> = std::collections::HashMap<u64, V, BuildIdentityHasher>;
pub type IdSet = std::collections::HashSet<u64, BuildIdentityHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn short_hashes_cut_on_a_character_boundary_or_not_at_all() {
        assert_eq!(short_hash("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_hash("abc"), "abc");
        assert_eq!(short_hash("ééééééé"), "éééééé");
        assert_eq!(short_hash("aéééééé"), "aéééééé");
    }

    #[test]
    fn typed_values_hash_differently() {
        let s = hash_value(FNV_OFFSET, &Value::Str("1".into()));
        let i = hash_value(FNV_OFFSET, &Value::Int(1));
        assert_ne!(s, i);
    }
}
