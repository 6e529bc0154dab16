//! GitHub App authentication: an RS256 JWT signed with the App's private key, exchanged for an
//! installation token (`POST /app/installations/{id}/access_tokens`).

use crate::http::{ApiError, HttpRequest, HttpResponse, Method, Service};
use crate::ids::RepoFullName;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;

/// A JWT lives 9 minutes (GitHub allows 10) and starts 60 s in the past (clock drift).
const JWT_LIFETIME_SECS: u64 = 540;
const JWT_BACKDATE_SECS: u64 = 60;

/// The App's key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GITHUB_APP_PRIVATE_KEY is not a usable RSA private key (PKCS#8 or PKCS#1 PEM)")]
pub struct BadAppKey;

/// Reads the App's private key. Accepts PKCS#8 (`BEGIN PRIVATE KEY`) and PKCS#1
/// (`BEGIN RSA PRIVATE KEY`, what GitHub hands out), with real or `\n`-escaped newlines.
pub fn parse_key(pem: &str) -> Result<RsaPrivateKey, BadAppKey> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let pem = pem.trim().replace("\\n", "\n");
    RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|_| BadAppKey)
}

/// The App's JWT at `now_secs` (seconds since the Unix epoch).
pub fn app_jwt(app_id: &str, key: &RsaPrivateKey, now_secs: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iat": now_secs.saturating_sub(JWT_BACKDATE_SECS),
        "exp": now_secs + JWT_LIFETIME_SECS,
        "iss": app_id,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signer = SigningKey::<sha2::Sha256>::new(key.clone());
    let signature = signer.sign(signing_input.as_bytes()).to_vec();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn app_request(base_url: &str, jwt: &str, method: Method, path: &str) -> HttpRequest {
    HttpRequest::new(
        Service::Github,
        method,
        format!("{}{path}", base_url.trim_end_matches('/')),
    )
    .header("authorization", format!("Bearer {jwt}"))
    .header("accept", "application/vnd.github+json")
    .header("x-github-api-version", crate::github_api::API_VERSION)
}

/// `GET /repos/{owner}/{repo}/installation`: the App's installation on a repository.
pub fn installation_for_repo(base_url: &str, jwt: &str, repo: &RepoFullName) -> HttpRequest {
    app_request(
        base_url,
        jwt,
        Method::Get,
        &format!("/repos/{repo}/installation"),
    )
}

/// `POST /app/installations/{id}/access_tokens`.
pub fn access_token(base_url: &str, jwt: &str, installation: u64) -> HttpRequest {
    app_request(
        base_url,
        jwt,
        Method::Post,
        &format!("/app/installations/{installation}/access_tokens"),
    )
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

/// Parses the installation's id.
pub fn parse_installation(response: &HttpResponse) -> Result<u64, ApiError> {
    if response.status == 404 {
        return Err(ApiError::permanent(
            Service::Github,
            "the GitHub App is not installed on this repository",
        ));
    }
    response.json::<Installation>(Service::Github).map(|i| i.id)
}

/// An installation token and when it expires.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationToken {
    /// The token (a secret: never logged).
    pub token: String,
    /// ISO 8601 expiry.
    pub expires_at: String,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstallationToken(expires {})", self.expires_at)
    }
}

/// Parses the access token answer.
pub fn parse_access_token(response: &HttpResponse) -> Result<InstallationToken, ApiError> {
    response.json(Service::Github)
}

/// Whether a token expiring at `expires_at` (Unix seconds) is still good for `needed` seconds from
/// `now`: a cached installation token handed to the executor must outlast the whole run.
pub fn still_valid(expires_at: u64, now: u64, needed: u64) -> bool {
    expires_at > now.saturating_add(needed)
}

/// Seconds since the Unix epoch of an ISO 8601 UTC time (`2026-11-22T10:00:00Z`), for token expiry.
pub fn parse_utc(iso: &str) -> Option<u64> {
    let t = time::PrimitiveDateTime::parse(
        iso.trim_end_matches('Z'),
        &time::format_description::well_known::Iso8601::DEFAULT,
    )
    .ok()?;
    u64::try_from(t.assume_utc().unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    // A throwaway 1024-bit key for this test only (fast to parse; never used anywhere else).
    fn key() -> RsaPrivateKey {
        let mut rng = rand_core::OsRng;
        RsaPrivateKey::new(&mut rng, 1024).unwrap()
    }

    #[test]
    fn jwt_is_rs256_signed_with_the_apps_claims() {
        let key = key();
        let jwt = app_jwt("424242", &key, 1_800_000_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "424242");
        assert_eq!(claims["iat"], 1_800_000_000 - 60);
        assert_eq!(claims["exp"], 1_800_000_000 + 540);
        let verifier = VerifyingKey::<sha2::Sha256>::new(key.to_public_key());
        let sig =
            Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        verifier
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn keys_and_times() {
        use rsa::pkcs8::EncodePrivateKey;
        let key = key();
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        let escaped = pem.replace('\n', "\\n");
        assert!(parse_key(&escaped).is_ok());
        assert_eq!(parse_key("nope"), Err(BadAppKey));
        assert_eq!(parse_utc("2026-11-22T10:00:00Z"), Some(1_795_341_600));
    }

    #[test]
    fn a_token_must_outlast_what_it_is_needed_for() {
        // Cached with 20 minutes left: fine for API calls, not for a 10-minute run plus margin.
        let now = 1_000_000;
        let expires = now + 1200;
        assert!(still_valid(expires, now, 300));
        assert!(!still_valid(expires, now, 600 + 900));
        assert!(!still_valid(now, now, 0));
    }
}
