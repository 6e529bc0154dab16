//! Secret masking: every string that leaves the executor (events, results, logs) passes through a
//! [`Masker`], which removes the configured secrets and anything shaped like a known token.

use regex_lite::Regex;
use std::sync::OnceLock;

/// What a masked secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not masked by value (they would mangle ordinary text); such
/// values are refused as configuration elsewhere.
pub const MIN_SECRET_LEN: usize = 8;

fn token_patterns() -> &'static Regex {
    static P: OnceLock<Regex> = OnceLock::new();
    P.get_or_init(|| {
        Regex::new(
            r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|sk-ant-[A-Za-z0-9_-]{10,}|x-access-token:[^@\s]+)",
        )
        .unwrap_or_else(|e| panic!("bad built-in pattern: {e}"))
    })
}

/// Removes secrets from text.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets.len())
    }
}

impl Masker {
    /// A masker for these secret values (plus the built-in token shapes).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Adds a secret value.
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// The text with every secret replaced by [`REDACTED`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        token_patterns().replace_all(&out, REDACTED).into_owned()
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
}
