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
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| KeyError("Discord public key is not a valid Ed25519 point"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError("no Discord public key configured"));
        }
        Ok(Self(keys))
    }
}

/// Verifies a Discord interaction: Ed25519 over `timestamp || body`, strict verification
/// (rejects non-canonical and small-order signatures).
pub fn verify_discord(
    keys: &DiscordKeys,
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let (Some(signature_hex), Some(timestamp)) = (signature_hex, timestamp) else {
        return Err(SignatureError::Malformed);
    };
    if timestamp.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut sig_bytes = [0u8; 64];
    hex::decode_to_slice(signature_hex.trim(), &mut sig_bytes)
        .map_err(|_| SignatureError::Malformed)?;
    let signature = Signature::from_bytes(&sig_bytes);
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    // Try every key without stopping early, so timing does not reveal which key matched.
    let matched = keys.0.iter().fold(false, |acc, key| {
        key.verify_strict(&message, &signature).is_ok() | acc
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
