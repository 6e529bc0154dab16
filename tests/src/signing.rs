//! Signs requests the way Discord and GitHub sign them, with the test-only keys of `dev/local.env`.

use ed25519_dalek::{Signer, SigningKey};

/// Discord's signature headers for a body: `(X-Signature-Ed25519, X-Signature-Timestamp)`.
pub fn discord_headers(seed_hex: &str, timestamp: &str, body: &[u8]) -> (String, String) {
    let seed: [u8; 32] = hex::decode(seed_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| panic!("DISCORD_TEST_SIGNING_SEED must be 32 bytes of hex"));
    let key = SigningKey::from_bytes(&seed);
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    (
        hex::encode(key.sign(&message).to_bytes()),
        timestamp.to_owned(),
    )
}

/// GitHub's `X-Hub-Signature-256` for a body.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    bugbot_shared::signature::github_signature(secret.as_bytes(), body)
}

/// Seconds since the Unix epoch, as Discord puts in `X-Signature-Timestamp`.
pub fn unix_timestamp() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string()
}
