//! Request signature checks for the two senders bugbot trusts.
//!
//! Both checks are pure: the caller passes the key material, the headers' values and the raw body.
//! Both accept several keys so that a secret can be rotated without downtime, and both fail with
//! [`SignatureError`], which says only *that* the check failed, never which key or byte was wrong.

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A signature check failed. Deliberately carries no detail: the HTTP answer is a bare 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent or not in the expected format.
    #[error("missing or malformed signature")]
    Malformed,
    /// The signature does not match any configured key.
    #[error("signature does not match")]
    Mismatch,
}

/// A configuration value that is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key: {0}")]
pub struct KeyError(&'static str);

/// Discord application public keys (hex, as the developer portal shows them).
#[derive(Debug, Clone)]
pub struct DiscordKeys(Vec<VerifyingKey>);

impl DiscordKeys {
    /// Parses a comma-separated list of hex Ed25519 public keys.
    pub fn from_hex_list(list: &str) -> Result<Self, KeyError> {
        let keys = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| {
                let bytes: [u8; 32] = hex::decode(k)
                    .map_err(|_| KeyError("Discord public key is not hex"))?
                    .try_into()
                    .map_err(|_| KeyError("Discord public key must be 32 bytes"))?;
                let key = VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| KeyError("Discord public key is not a valid Ed25519 point"))?;
                if key.is_weak() {
                    return Err(KeyError("Discord public key is a weak (small-order) point"));
                }
                Ok(key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError("no Discord public key configured"));
        }
        Ok(Self(keys))
    }

    /// The keys' 32-byte encodings, for an Ed25519 backend of the runtime's (WebCrypto).
    pub fn raw(&self) -> Vec<[u8; 32]> {
        self.0.iter().map(VerifyingKey::to_bytes).collect()
    }
}

/// What Ed25519 verifies for a Discord interaction — `signature` over `message`
/// (`timestamp || body`) — once [`prepare_discord`] made the checks strict verification makes
/// besides the curve arithmetic.
#[derive(Debug, Clone)]
pub struct DiscordSigned {
    /// `R || S`.
    pub signature: [u8; 64],
    /// `timestamp || body`.
    pub message: Vec<u8>,
}

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Every encoding of a point of small order (the eight canonical ones and the six non-canonical
/// ones), as listed in "Taming the many EdDSAs" (Chalkias et al., 2020).
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 14] = {
    const fn enc(first: [u8; 2], fill: u8, last: u8) -> [u8; 32] {
        let mut e = [fill; 32];
        e[0] = first[0];
        e[1] = first[1];
        e[31] = last;
        e
    }
    const fn hex32(s: &[u8; 64]) -> [u8; 32] {
        const fn nib(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                _ => c - b'a' + 10,
            }
        }
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = nib(s[2 * i]) << 4 | nib(s[2 * i + 1]);
            i += 1;
        }
        out
    }
    [
        enc([0x01, 0x00], 0x00, 0x00),
        enc([0x01, 0x00], 0x00, 0x80),
        enc([0x00, 0x00], 0x00, 0x00),
        enc([0x00, 0x00], 0x00, 0x80),
        enc([0xec, 0xff], 0xff, 0x7f),
        enc([0xec, 0xff], 0xff, 0xff),
        enc([0xed, 0xff], 0xff, 0x7f),
        enc([0xed, 0xff], 0xff, 0xff),
        enc([0xee, 0xff], 0xff, 0x7f),
        enc([0xee, 0xff], 0xff, 0xff),
        hex32(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        hex32(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
        hex32(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        hex32(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    ]
};

/// Whether a little-endian scalar is below the group order (a canonical `S`).
fn is_canonical_scalar(s: &[u8]) -> bool {
    for i in (0..32).rev() {
        match s[i].cmp(&GROUP_ORDER[i]) {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    false
}

/// Reads a Discord interaction's signature headers and makes the checks of strict verification
/// that need no curve arithmetic: hex of the right length, `S` canonical, `R` not of small order.
/// A backend that then checks `R == [S]B − [k]A` on the encodings (ed25519-dalek's `verify`,
/// BoringSSL's — the runtime's WebCrypto) accepts exactly what `verify_strict` accepts, for keys
/// that are not weak (rejected by [`DiscordKeys::from_hex_list`]).
pub fn prepare_discord(
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<DiscordSigned, SignatureError> {
    let (Some(signature_hex), Some(timestamp)) = (signature_hex, timestamp) else {
        return Err(SignatureError::Malformed);
    };
    if timestamp.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signature_hex.trim(), &mut signature)
        .map_err(|_| SignatureError::Malformed)?;
    if !is_canonical_scalar(&signature[32..]) {
        return Err(SignatureError::Mismatch);
    }
    if SMALL_ORDER_ENCODINGS
        .iter()
        .any(|e| e[..] == signature[..32])
    {
        return Err(SignatureError::Mismatch);
    }
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    Ok(DiscordSigned { signature, message })
}

/// Verifies a Discord interaction: Ed25519 over `timestamp || body`, strict verification
/// (rejects non-canonical and small-order signatures).
pub fn verify_discord(
    keys: &DiscordKeys,
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let signed = prepare_discord(signature_hex, timestamp, body)?;
    let signature = Signature::from_bytes(&signed.signature);
    // Try every key without stopping early, so timing does not reveal which key matched.
    let matched = keys.0.iter().fold(false, |acc, key| {
        key.verify_strict(&signed.message, &signature).is_ok() | acc
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Shared secrets of a GitHub App's webhook (several during a rotation).
#[derive(Clone)]
pub struct WebhookSecrets(Vec<Vec<u8>>);

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} redacted)", self.0.len())
    }
}

impl WebhookSecrets {
    /// Parses a comma-separated list of secrets. Empty entries are ignored.
    pub fn from_list(list: &str) -> Result<Self, KeyError> {
        let secrets: Vec<Vec<u8>> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        if secrets.is_empty() {
            return Err(KeyError("no GitHub webhook secret configured"));
        }
        Ok(Self(secrets))
    }
}

/// Computes `sha256=<hex>` for a body, as GitHub puts it in `X-Hub-Signature-256`.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

fn hmac_sha256(secret: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Verifies GitHub's `X-Hub-Signature-256` header (HMAC-SHA256 of the raw body), constant-time.
pub fn verify_github(
    secrets: &WebhookSecrets,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let hex_part = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .ok_or(SignatureError::Malformed)?;
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut given).map_err(|_| SignatureError::Malformed)?;
    let matched = secrets
        .0
        .iter()
        .fold(subtle::Choice::from(0u8), |acc, secret| {
            acc | hmac_sha256(secret, body).ct_eq(&given)
        });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Constant-time comparison of a bearer token (admin and executor APIs).
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|given| secret_matches(given, expected))
}

/// Constant-time comparison of a presented secret with the expected one (an empty expected secret
/// never matches).
pub fn secret_matches(given: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    // Compare digests so that the length of the expected secret is not leaked either.
    use sha2::Digest;
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn test_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn keys_of(signers: &[&SigningKey]) -> DiscordKeys {
        let list: Vec<String> = signers
            .iter()
            .map(|k| hex::encode(k.verifying_key().as_bytes()))
            .collect();
        DiscordKeys::from_hex_list(&list.join(",")).unwrap()
    }

    fn sign(key: &SigningKey, ts: &str, body: &[u8]) -> String {
        let mut m = ts.as_bytes().to_vec();
        m.extend_from_slice(body);
        hex::encode(key.sign(&m).to_bytes())
    }

    const PING: &[u8] = br#"{"application_id":"1","id":"2","token":"t","type":1,"version":1}"#;

    #[test]
    fn the_small_order_list_is_every_small_order_encoding_dalek_knows() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            let e = point.compress().to_bytes();
            assert!(SMALL_ORDER_ENCODINGS.contains(&e), "{}", hex::encode(e));
        }
        for e in SMALL_ORDER_ENCODINGS {
            if let Some(p) = CompressedEdwardsY(e).decompress() {
                assert!(p.is_small_order(), "{}", hex::encode(e));
            }
        }
        let mut l = GROUP_ORDER;
        assert!(!is_canonical_scalar(&l));
        l[0] -= 1;
        assert!(is_canonical_scalar(&l));
        assert!(is_canonical_scalar(&[0u8; 32]));
    }

    /// What `prepare_discord` lets through, a plain (cofactorless) check accepts exactly when
    /// `verify_strict` does: for valid signatures, non-canonical `S`, and small-order `R`.
    #[test]
    fn prepare_then_a_plain_check_is_as_strict_as_verify_strict() {
        let key = test_key(9);
        let vk = key.verifying_key();
        let ts = "1700000000";
        let good = sign(&key, ts, PING);
        let both = |sig: &str| {
            let strict = verify_discord(&keys_of(&[&key]), Some(sig), Some(ts), PING).is_ok();
            let plain = prepare_discord(Some(sig), Some(ts), PING).is_ok_and(|s| {
                ed25519_dalek::Verifier::verify(
                    &vk,
                    &s.message,
                    &Signature::from_bytes(&s.signature),
                )
                .is_ok()
            });
            (strict, plain)
        };
        assert_eq!(both(&good), (true, true));
        // S + ℓ: the same point, a non-canonical scalar.
        let mut raw = hex::decode(&good).unwrap();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(raw[32 + i]) + u16::from(GROUP_ORDER[i]) + carry;
            raw[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(both(&hex::encode(&raw)), (false, false));
        // A small-order R.
        for e in SMALL_ORDER_ENCODINGS {
            let mut raw = hex::decode(&good).unwrap();
            raw[..32].copy_from_slice(&e);
            assert_eq!(both(&hex::encode(&raw)), (false, false));
        }
        // A weak key is refused when configured.
        let weak = hex::encode(SMALL_ORDER_ENCODINGS[0]);
        assert!(DiscordKeys::from_hex_list(&weak).is_err());
        assert_eq!(keys_of(&[&key]).raw(), vec![vk.to_bytes()]);
    }

    #[test]
    fn discord_accepts_a_valid_signature() {
        let key = test_key(7);
        let sig = sign(&key, "1700000000", PING);
        assert_eq!(
            verify_discord(&keys_of(&[&key]), Some(&sig), Some("1700000000"), PING),
            Ok(())
        );
    }

    #[test]
    fn discord_accepts_any_key_of_a_rotation() {
        let (old, new) = (test_key(1), test_key(2));
        let keys = keys_of(&[&old, &new]);
        for k in [&old, &new] {
            let sig = sign(k, "1", PING);
            assert_eq!(verify_discord(&keys, Some(&sig), Some("1"), PING), Ok(()));
        }
    }

    #[test]
    fn discord_rejects_tampering() {
        let key = test_key(7);
        let keys = keys_of(&[&key]);
        let sig = sign(&key, "1700000000", PING);
        let mut body = PING.to_vec();
        body[5] ^= 1;
        assert_eq!(
            verify_discord(&keys, Some(&sig), Some("1700000000"), &body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_discord(&keys, Some(&sig), Some("1700000001"), PING),
            Err(SignatureError::Mismatch)
        );
        let other = sign(&test_key(8), "1700000000", PING);
        assert_eq!(
            verify_discord(&keys, Some(&other), Some("1700000000"), PING),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn discord_rejects_missing_or_malformed_headers() {
        let keys = keys_of(&[&test_key(7)]);
        assert_eq!(
            verify_discord(&keys, None, Some("1"), PING),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_discord(&keys, Some("00"), None, PING),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_discord(&keys, Some("zz"), Some("1"), PING),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_discord(&keys, Some(&"ab".repeat(63)), Some("1"), PING),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn discord_key_list_is_validated() {
        assert!(DiscordKeys::from_hex_list("").is_err());
        assert!(DiscordKeys::from_hex_list("xyz").is_err());
        assert!(DiscordKeys::from_hex_list("abcd").is_err());
    }

    /// The vector GitHub publishes in "Validating webhook deliveries".
    #[test]
    fn github_published_vector() {
        let secrets = WebhookSecrets::from_list("It's a Secret to Everybody").unwrap();
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            github_signature(b"It's a Secret to Everybody", b"Hello, World!"),
            header
        );
        assert_eq!(
            verify_github(&secrets, Some(header), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            verify_github(&secrets, Some(header), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn github_rotation_and_malformed_headers() {
        let secrets = WebhookSecrets::from_list("old-secret, new-secret").unwrap();
        for s in ["old-secret", "new-secret"] {
            let h = github_signature(s.as_bytes(), b"{}");
            assert_eq!(verify_github(&secrets, Some(&h), b"{}"), Ok(()));
        }
        let wrong = github_signature(b"other", b"{}");
        assert_eq!(
            verify_github(&secrets, Some(&wrong), b"{}"),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            None,
            Some(""),
            Some("sha1=abc"),
            Some("sha256=xyz"),
            Some("sha256=abcd"),
        ] {
            assert_eq!(
                verify_github(&secrets, bad, b"{}"),
                Err(SignatureError::Malformed)
            );
        }
        assert!(WebhookSecrets::from_list(" , ").is_err());
        assert!(!format!("{secrets:?}").contains("secret,"));
    }

    #[test]
    fn errors_leak_nothing() {
        assert_eq!(
            SignatureError::Mismatch.to_string(),
            "signature does not match"
        );
        assert_eq!(
            SignatureError::Malformed.to_string(),
            "missing or malformed signature"
        );
    }

    #[test]
    fn bearer_tokens() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
        assert!(!bearer_matches(Some("Bearer "), ""));
    }
}
