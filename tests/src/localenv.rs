//! Reads `dev/local.env`, the one file of test-only values for the local stack.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The repository's root (the workspace directory).
pub fn repo_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is tests/; its parent is the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A published API description the stand-ins and tests check against (`tests/specs/README.md`
/// says where each comes from and under which license).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// Discord's OpenAPI document, vendored in `tests/specs/`.
    DiscordOpenApi,
    /// Linear's GraphQL schema, vendored in `tests/specs/`.
    LinearSchema,
    /// GitHub's REST OpenAPI document, from the pinned npm package `@octokit/openapi`.
    GitHubOpenApi,
    /// GitHub's example webhook deliveries, from the pinned npm package `@octokit/webhooks-examples`.
    GitHubWebhookExamples,
    /// GitHub's GraphQL schema, from the pinned npm package `@octokit/graphql-schema`.
    GitHubGraphqlSchema,
}

impl Spec {
    /// The file's path inside the repository (npm packages are installed by `scripts/bootstrap`).
    pub fn path(self) -> PathBuf {
        let root = repo_root();
        match self {
            Self::DiscordOpenApi => root.join("tests/specs/discord-openapi.json"),
            Self::LinearSchema => root.join("tests/specs/linear-schema.graphql"),
            Self::GitHubOpenApi => {
                root.join("node_modules/@octokit/openapi/generated/api.github.com.json")
            }
            Self::GitHubWebhookExamples => {
                root.join("node_modules/@octokit/webhooks-examples/api.github.com/index.json")
            }
            Self::GitHubGraphqlSchema => {
                root.join("node_modules/@octokit/graphql-schema/schema.graphql")
            }
        }
    }

    /// Reads the file, with an error that says how to get it when it is missing.
    pub fn read(self) -> Result<String> {
        let path = self.path();
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (npm packages come from scripts/bootstrap)",
                path.display()
            )
        })
    }
}

/// `KEY=VALUE` pairs in file order, with `${KEY}` references to earlier keys substituted.
#[derive(Debug, Clone, Default)]
pub struct LocalEnv {
    entries: Vec<(String, String)>,
}

impl LocalEnv {
    /// Loads `dev/local.env` from the repository.
    pub fn load() -> Result<Self> {
        let path = repo_root().join("dev/local.env");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    /// Loads `dev/local.env` with the stack's addresses replaced (tests pick free ports); values
    /// that refer to them (`${SANDBOX_URL}/...`) follow.
    pub fn load_with_urls(gateway: &str, executor: &str, sandbox: &str) -> Result<Self> {
        let path = repo_root().join("dev/local.env");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse_with(
            &text,
            &[
                ("GATEWAY_URL", gateway),
                ("EXECUTOR_URL", executor),
                ("SANDBOX_URL", sandbox),
            ],
        )
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with(text, &[])
    }

    /// Parses the file's text, replacing the values of the keys in `overrides`.
    pub fn parse_with(text: &str, overrides: &[(&str, &str)]) -> Result<Self> {
        let mut env = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                bail!("dev/local.env line {}: expected KEY=VALUE", n + 1);
            };
            let key = k.trim();
            let value = match overrides.iter().find(|(o, _)| *o == key) {
                Some((_, o)) => (*o).to_owned(),
                None => env.substitute(v.trim()),
            };
            env.set(key, &value);
        }
        Ok(env)
    }

    fn substitute(&self, value: &str) -> String {
        let mut out = value.to_owned();
        for (k, v) in &self.entries {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        out
    }

    /// A value; panics with the key's name if absent, since every key the stack uses is in the file.
    pub fn get(&self, key: &str) -> String {
        self.try_get(key)
            .unwrap_or_else(|| panic!("dev/local.env has no {key}"))
    }

    /// A value, if present.
    pub fn try_get(&self, key: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Sets or replaces a value.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.entries.push((key.to_owned(), value.to_owned())),
        }
    }

    /// All entries, in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Renders as an env file (for `wrangler dev --env-file`).
    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_substitutes() {
        let env = LocalEnv::parse("# c\nA=http://x:1\n\nB=${A}/api\n").unwrap();
        assert_eq!(env.get("B"), "http://x:1/api");
        assert!(LocalEnv::parse("nonsense").is_err());
        let env = LocalEnv::parse_with("A=x\nB=${A}/y\n", &[("A", "z")]).unwrap();
        assert_eq!(env.get("B"), "z/y");
    }

    #[test]
    fn the_committed_file_has_every_required_key() {
        let env = LocalEnv::load().unwrap();
        for key in [
            "GATEWAY_URL",
            "EXECUTOR_URL",
            "SANDBOX_URL",
            "DISCORD_APPLICATION_ID",
            "DISCORD_PUBLIC_KEY",
            "DISCORD_TEST_SIGNING_SEED",
            "GITHUB_WEBHOOK_SECRET",
            "ADMIN_TOKEN",
            "DISCORD_TEST_GUILD_ID",
            "DISCORD_TEST_CHANNEL_ID",
            "DISCORD_TEST_FIX_ROLE_ID",
            "GITHUB_TEST_REPO",
        ] {
            assert!(env.try_get(key).is_some(), "{key} missing");
        }
        // The seed must be the private half of the public key the Workers verify with.
        let seed: [u8; 32] = hex::decode(env.get("DISCORD_TEST_SIGNING_SEED"))
            .unwrap()
            .try_into()
            .unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        assert_eq!(
            hex::encode(public.as_bytes()),
            env.get("DISCORD_PUBLIC_KEY")
        );
    }
}

#[cfg(test)]
mod pins {
    use super::repo_root;

    /// The executor image installs the Claude Code CLI at the version package.json pins.
    #[test]
    fn dockerfile_and_package_json_pin_the_same_claude_code() {
        let root = repo_root();
        let package: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("package.json")).unwrap())
                .unwrap();
        let pinned = package["devDependencies"]["@anthropic-ai/claude-code"]
            .as_str()
            .unwrap();
        let dockerfile =
            std::fs::read_to_string(root.join("executor-container/Dockerfile")).unwrap();
        assert!(
            dockerfile.contains(&format!("ARG CLAUDE_CODE_VERSION={pinned}")),
            "executor-container/Dockerfile must pin Claude Code {pinned}"
        );
        let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml")).unwrap();
        let channel = toolchain
            .lines()
            .find_map(|l| l.strip_prefix("channel = "))
            .unwrap()
            .trim_matches('"');
        let major_minor: String = channel.split('.').take(2).collect::<Vec<_>>().join(".");
        assert!(
            dockerfile.contains(&format!("FROM rust:{major_minor}-")),
            "Dockerfile Rust != {channel}"
        );
    }
}
