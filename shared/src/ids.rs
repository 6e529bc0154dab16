//! Validated identifiers: parsed once at the boundary, trusted afterwards.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An identifier failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    kind: &'static str,
    reason: &'static str,
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps the value.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(value).map_err(|reason| IdError { kind: $kind, reason })?;
                Ok(Self(value.to_owned()))
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A Discord snowflake: a decimal u64 carried as a string, as Discord's JSON does.
    Snowflake,
    "Discord id",
    |s| {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected a decimal snowflake");
        }
        s.parse::<u64>().map(|_| ()).map_err(|_| "snowflake out of range")
    }
);

string_id!(
    /// A GitHub repository's `owner/name`.
    RepoFullName,
    "repository",
    |s| {
        let (owner, name) = s.split_once('/').ok_or("expected owner/name")?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 100
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if ok(owner) && ok(name) {
            Ok(())
        } else {
            Err("expected owner/name of letters, digits, '-', '_' or '.'")
        }
    }
);

string_id!(
    /// A job's id. Derived from what triggered it (`dc-<interaction id>`, `gh-<delivery id>`, ...)
    /// so that a redelivered trigger maps to the same job.
    JobId,
    "job id",
    |s| {
        if s.len() < 4 || s.len() > 80 {
            return Err("expected 4 to 80 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("expected letters, digits, '-' or '_'");
        }
        Ok(())
    }
);

impl RepoFullName {
    /// The owner part.
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or("", |(o, _)| o)
    }

    /// The repository name part.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, n)| n)
    }
}

impl JobId {
    /// The id of a job triggered by a Discord interaction.
    pub fn for_discord_interaction(interaction: &Snowflake) -> Self {
        Self(format!("dc-{interaction}"))
    }

    /// The id of a job triggered by a Discord message (an @mention).
    pub fn for_discord_message(message: &Snowflake) -> Self {
        Self(format!("dm-{message}"))
    }

    /// The id of a job triggered by a GitHub webhook delivery (`X-GitHub-Delivery`, a GUID).
    pub fn for_github_delivery(delivery: &str) -> Result<Self, IdError> {
        Self::parse(&format!("gh-{delivery}"))
    }
}

/// A UUID (version-4 layout) derived from `kind` and `key`: the same inputs always give the same id.
///
/// Linear accepts a client-chosen id on `issueCreate`, `commentCreate` and `attachmentCreate`;
/// deriving it from the thread or the job makes a repeated create refer to the same entity, so a
/// redelivered job cannot create a second one.
pub fn stable_uuid(kind: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"bugbot:")
        .chain_update(kind.as_bytes())
        .chain_update(b":")
        .chain_update(key.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_uuids_are_stable_distinct_and_v4_shaped() {
        let a = stable_uuid("issue", "https://discord.com/channels/1/2");
        assert_eq!(a, stable_uuid("issue", "https://discord.com/channels/1/2"));
        assert_ne!(
            a,
            stable_uuid("comment", "https://discord.com/channels/1/2")
        );
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn snowflakes() {
        assert!(Snowflake::parse("1234567890123456789").is_ok());
        assert!(Snowflake::parse("").is_err());
        assert!(Snowflake::parse("12a").is_err());
        assert!(Snowflake::parse("99999999999999999999").is_err());
        let s: Result<Snowflake, _> = serde_json::from_str("\"x\"");
        assert!(s.is_err());
    }

    #[test]
    fn repos() {
        let r = RepoFullName::parse("acme/web-app").unwrap();
        assert_eq!((r.owner(), r.name()), ("acme", "web-app"));
        for bad in ["acme", "/x", "a/", "a/b/c", "a b/c", "../x", "a/.."] {
            assert!(RepoFullName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_ids() {
        let id = JobId::for_github_delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958").unwrap();
        assert_eq!(id.as_str(), "gh-72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert!(JobId::for_github_delivery("../../etc").is_err());
        assert!(JobId::parse("abc").is_err());
        assert!(JobId::parse("job:1").is_err());
    }
}
