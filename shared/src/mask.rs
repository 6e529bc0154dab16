//! Secret masking and finding: every string that leaves the executor (events, results, logs, the
//! commit message) passes through a [`Masker`], which removes the configured secrets — as they are,
//! reversed, hex- or base64-encoded — and anything shaped like a known token; and what a fix would
//! push is [`Masker::scan`]ned for the same, so a hit rejects the fix without repeating the secret.

use regex_lite::Regex;
use std::sync::OnceLock;

/// What a masked secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not masked by value (they would mangle ordinary text); such
/// values are refused as configuration elsewhere.
pub const MIN_SECRET_LEN: usize = 8;

/// Token shapes that are secrets whatever their value, with what each is (for a finding).
const TOKEN_SHAPES: &[(&str, &str)] = &[
    ("a GitHub token", r"gh[pousr]_[A-Za-z0-9]{20,}"),
    ("a GitHub token", r"github_pat_[A-Za-z0-9_]{20,}"),
    ("an Anthropic API key", r"sk-ant-[A-Za-z0-9_-]{10,}"),
    ("an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a private key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"),
    ("credentials in a URL", r"x-access-token:[^@\s]+"),
];

fn token_patterns() -> &'static [(&'static str, Regex)] {
    static P: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    P.get_or_init(|| {
        TOKEN_SHAPES
            .iter()
            .map(|(what, re)| {
                let re = Regex::new(re).unwrap_or_else(|e| panic!("bad built-in pattern: {e}"));
                (*what, re)
            })
            .collect()
    })
}

/// How a configured secret appears in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretForm {
    /// As it is.
    Raw,
    /// Reversed.
    Reversed,
    /// Hex of its bytes (lower or upper case).
    Hex,
    /// Base64 (standard or URL-safe alphabet), at any alignment inside a longer encoded text.
    Base64,
}

impl SecretForm {
    fn describe(self) -> &'static str {
        match self {
            Self::Raw => "a configured secret",
            Self::Reversed => "a configured secret, reversed",
            Self::Hex => "a configured secret, hex-encoded",
            Self::Base64 => "a configured secret, base64-encoded",
        }
    }
}

/// The strings a secret can hide as: itself, reversed, hex, and base64 at each of the three
/// alignments it can have inside a longer encoded text (only the characters that depend on the
/// secret's bytes alone, so a match does not depend on what surrounds it).
pub fn secret_forms(secret: &str) -> Vec<(SecretForm, String)> {
    use base64::Engine as _;
    let bytes = secret.as_bytes();
    let mut forms = vec![
        (SecretForm::Raw, secret.to_owned()),
        (SecretForm::Reversed, secret.chars().rev().collect()),
        (SecretForm::Hex, hex::encode(bytes)),
        (SecretForm::Hex, hex::encode_upper(bytes)),
    ];
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            // Character i holds bits [6i, 6i + 6) of the stream; the secret's are [8·offset, 8·(offset + n)).
            let first = (8 * offset).div_ceil(6);
            let end = (8 * (offset + bytes.len())) / 6;
            if let Some(stable) = encoded.get(first..end) {
                forms.push((SecretForm::Base64, stable.to_owned()));
            }
        }
    }
    forms.retain(|(_, f)| f.len() >= MIN_SECRET_LEN);
    forms.sort_by(|a, b| a.1.cmp(&b.1));
    forms.dedup_by(|a, b| a.1 == b.1);
    forms
}

/// A secret found in text. It says what was found, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding(pub &'static str);

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Removes secrets from text, and finds them.
#[derive(Clone, Default)]
pub struct Masker {
    /// Every form of every configured secret, longest first (so a secret that contains another
    /// is removed whole).
    needles: Vec<(SecretForm, String)>,
    secrets: usize,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets)
    }
}

impl Masker {
    /// A masker for these secret values (plus the built-in token shapes).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut masker = Self::default();
        for s in secrets {
            masker.add(&s.into());
        }
        masker
    }

    /// Adds a secret value.
    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN || self.needles.iter().any(|(_, n)| n == secret) {
            return;
        }
        self.secrets += 1;
        self.needles.extend(secret_forms(secret));
        self.needles
            .sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
    }

    /// The text with every secret (in any of its forms) and token shape replaced by [`REDACTED`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (_, needle) in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        for (_, re) in token_patterns() {
            if re.is_match(&out) {
                out = re.replace_all(&out, REDACTED).into_owned();
            }
        }
        out
    }

    /// What secrets the text holds: configured ones in any form, and known token shapes. Empty
    /// when there are none. Findings name the kind, never the value.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut found: Vec<Finding> = Vec::new();
        let mut push = |f: Finding| {
            if !found.contains(&f) {
                found.push(f);
            }
        };
        for (form, needle) in &self.needles {
            if text.contains(needle.as_str()) {
                push(Finding(form.describe()));
            }
        }
        for (what, re) in token_patterns() {
            if re.is_match(text) {
                push(Finding(what));
            }
        }
        found
    }

    /// Masks every string inside a JSON value.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.mask(s),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| self.mask_json(v)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|v| self.mask_json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_configured_secrets_and_token_shapes() {
        let m = Masker::new(["super-secret-value", "short"]);
        let text = "token ghs_16C7e42F292c6912E7710c838347Ae178B4a and super-secret-value, \
                    pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop, key sk-ant-api03-abcdefghijkl, short";
        let out = m.mask(text);
        assert!(!out.contains("ghs_16C7"));
        assert!(!out.contains("super-secret-value"));
        assert!(!out.contains("github_pat_"));
        assert!(!out.contains("sk-ant-"));
        assert!(
            out.contains("short"),
            "short values are not masked by value"
        );
        assert_eq!(out.matches(REDACTED).count(), 4);
    }

    #[test]
    fn masks_credentials_in_urls_and_json() {
        let m = Masker::new(["tok-123456789"]);
        assert_eq!(
            m.mask("https://x-access-token:abc@github.com/a/b"),
            format!("https://{REDACTED}@github.com/a/b")
        );
        let mut v =
            serde_json::json!({"a": ["tok-123456789"], "b": {"c": "x tok-123456789 y"}, "n": 1});
        m.mask_json(&mut v);
        assert_eq!(v["a"][0], REDACTED);
        assert_eq!(v["b"]["c"], format!("x {REDACTED} y"));
        assert!(!format!("{m:?}").contains("tok"));
    }

    #[test]
    fn finds_and_masks_every_form_of_a_secret() {
        use base64::Engine as _;
        let secret = "sekret-value-42";
        let m = Masker::new([secret]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let reversed: String = secret.chars().rev().collect();
        let cases = [
            (format!("x = '{secret}'"), "a configured secret"),
            (format!("x = '{reversed}'"), "a configured secret, reversed"),
            (
                format!("x = {}", hex::encode(secret)),
                "a configured secret, hex-encoded",
            ),
            (
                format!("x = {}", hex::encode_upper(secret)),
                "a configured secret, hex-encoded",
            ),
            // Inside a longer encoded text, at each of the three alignments.
            (
                b64.encode(format!("{secret} tail")),
                "a configured secret, base64-encoded",
            ),
            (
                b64.encode(format!("a{secret} tail")),
                "a configured secret, base64-encoded",
            ),
            (
                b64.encode(format!("ab{secret} tail")),
                "a configured secret, base64-encoded",
            ),
            (
                base64::engine::general_purpose::URL_SAFE.encode(format!("ab{secret}?>")),
                "a configured secret, base64-encoded",
            ),
        ];
        for (text, what) in cases {
            let found = m.scan(&text);
            assert!(found.contains(&Finding(what)), "{text}: {found:?}");
            assert!(found.iter().all(|f| !f.0.contains(secret)));
            let masked = m.mask(&text);
            assert!(m.scan(&masked).is_empty(), "{text} masked to {masked}");
        }
        assert!(m.scan("an ordinary line of code();").is_empty());
    }

    #[test]
    fn finds_token_shapes() {
        let m = Masker::default();
        for (text, what) in [
            (
                "t = 'ghp_16C7e42F292c6912E7710c838347Ae178B4a'",
                "a GitHub token",
            ),
            (
                "k = 'sk-ant-api03-abcdefghijklmnopqrstuvwxyz'",
                "an Anthropic API key",
            ),
            (
                "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
                "an AWS access key",
            ),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "a private key"),
            ("-----BEGIN PRIVATE KEY-----", "a private key"),
            (
                "https://x-access-token:abc@github.com",
                "credentials in a URL",
            ),
        ] {
            assert_eq!(m.scan(text), vec![Finding(what)], "{text}");
        }
        assert!(m.scan("-----BEGIN PUBLIC KEY-----").is_empty());
    }
}
