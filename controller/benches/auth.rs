//! What signing in costs per API request: the single `--api-token`
//! (constant-time compare), an auth-file token (SHA-256, then a map lookup
//! among 1,000 principals), and an OIDC JWT (signature, claims, grants),
//! each through `Authenticator::authenticate` as the API calls it, next to
//! the floor of driving one future to completion.
//!
//! ```sh
//! cargo bench -p phoenix-controller --bench auth -- --warm-up-time 1
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use phoenix_controller::auth::file::{format_hash, hash_token};
use phoenix_controller::auth::{AuthSource, Authenticator, Token};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;

const PRINCIPALS: usize = 1_000;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn token_of(i: usize) -> String {
    format!("bench-token-{i:06}-0123456789abcdef")
}

/// An auth file of `PRINCIPALS` operators and an OIDC section whose key
/// set (one P-256 and one Ed25519 key) is in `dir`; the signers.
fn setup(dir: &std::path::Path) -> (std::path::PathBuf, EncodingKey, EncodingKey) {
    let rng = SystemRandom::new();
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
        .unwrap();
    let point = ec.public_key().as_ref();
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({ "keys": [
        { "kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..]) },
        { "kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "x": b64(ed.public_key().as_ref()) },
    ]});
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let mut file = String::from("principals:\n");
    for i in 0..PRINCIPALS {
        let hash = format_hash(&hash_token(token_of(i).as_bytes()));
        writeln!(
            file,
            "  - {{ name: p{i}, role: operator, scope: {{ labels: {{ team: t{i} }} }}, tokens: [\"{hash}\"] }}"
        )
        .unwrap();
    }
    write!(
        file,
        "oidc:\n  issuer: https://id.bench\n  audience: phoenix\n  jwks_file: {}\n  grants:\n    - {{ value: sre, role: viewer }}\n    - {{ value: ops, role: operator, scope: {{ labels: {{ team: ops }} }} }}\n",
        jwks_path.display()
    )
    .unwrap();
    let auth = dir.join("auth.yaml");
    std::fs::write(&auth, file).unwrap();
    (
        auth,
        EncodingKey::from_ec_der(ec_pkcs8.as_ref()),
        EncodingKey::from_ed_der(ed_pkcs8.as_ref()),
    )
}

fn jwt(key: &EncodingKey, alg: Algorithm, kid: &str) -> String {
    let now = get_current_timestamp();
    let claims = json!({ "iss": "https://id.bench", "aud": "phoenix", "sub": "alice",
                         "groups": ["sre", "ops"], "iat": now, "exp": now + 3600 });
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("phoenix-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (auth, ec, ed) = setup(&dir);
    let single_token = "single-api-token-0123456789abcdef";
    let single = rt
        .block_on(Authenticator::new(AuthSource::SingleToken(
            Token::new(single_token).unwrap(),
        )))
        .unwrap();
    let file = rt
        .block_on(Authenticator::new(AuthSource::File(auth)))
        .unwrap();
    let header = |t: &str| format!("Bearer {t}").into_bytes();
    let cases = [
        ("single_token", &single, header(single_token)),
        ("auth_file_token", &file, header(&token_of(PRINCIPALS / 2))),
        (
            "oidc_es256",
            &file,
            header(&jwt(&ec, Algorithm::ES256, "ec")),
        ),
        (
            "oidc_eddsa",
            &file,
            header(&jwt(&ed, Algorithm::EdDSA, "ed")),
        ),
    ];
    let mut group = c.benchmark_group("authenticate");
    group.bench_function("floor_block_on", |b| b.iter(|| rt.block_on(async {})));
    for (name, authenticator, header) in &cases {
        // Every case must sign in, or it measures a refusal.
        assert!(
            rt.block_on(authenticator.authenticate(Some(header), CLIENT))
                .is_ok(),
            "{name}"
        );
        group.bench_function(*name, |b| {
            b.iter(|| rt.block_on(authenticator.authenticate(Some(header), CLIENT)))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
