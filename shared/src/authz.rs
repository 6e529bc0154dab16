//! Who may ask bugbot for what: the access policy and its decisions.
//!
//! The policy is configuration (see `docs/configuration.md`); every decision is a pure
//! function of the policy and the request, so it is unit-tested here.

use crate::ids::{RepoFullName, Snowflake};
use crate::job::Command;

/// Default GitHub `author_association` values trusted without asking GitHub for a permission.
pub const DEFAULT_ASSOCIATIONS: &[&str] = &["OWNER", "MEMBER", "COLLABORATOR"];
/// Default per-user limit of jobs per hour.
pub const DEFAULT_JOBS_PER_HOUR: u32 = 20;

/// Configuration that cannot be used as given. Names the setting, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration {setting}: {problem}")]
pub struct PolicyError {
    setting: &'static str,
    problem: String,
}

/// The access policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Repositories bugbot serves (`GITHUB_REPOS`). Empty: no GitHub repository is served.
    pub github_repos: Vec<RepoFullName>,
    /// `author_association` values trusted at once (`GITHUB_TRIGGER_ASSOCIATIONS`).
    pub github_associations: Vec<String>,
    /// bugbot's own GitHub login (`GITHUB_BOT_LOGIN`), whose comments never trigger.
    pub github_bot_login: Option<String>,
    /// Discord servers bugbot serves (`DISCORD_GUILDS`).
    pub discord_guilds: Vec<Snowflake>,
    /// Roles allowed to run `fix` (`DISCORD_FIX_ROLES`). Empty: nobody may run `fix` from Discord.
    pub discord_fix_roles: Vec<Snowflake>,
    /// Roles allowed to run `contextualize` (`DISCORD_CONTEXTUALIZE_ROLES`). Empty: every member.
    pub discord_contextualize_roles: Vec<Snowflake>,
    /// Jobs one user may start per hour (`JOBS_PER_USER_PER_HOUR`).
    pub jobs_per_hour: u32,
}

/// Raw settings, as read from the environment (absent = `None`).
#[derive(Debug, Clone, Default)]
pub struct PolicySettings<'a> {
    /// `GITHUB_REPOS`
    pub github_repos: Option<&'a str>,
    /// `GITHUB_TRIGGER_ASSOCIATIONS`
    pub github_associations: Option<&'a str>,
    /// `GITHUB_BOT_LOGIN`
    pub github_bot_login: Option<&'a str>,
    /// `DISCORD_GUILDS`
    pub discord_guilds: Option<&'a str>,
    /// `DISCORD_FIX_ROLES`
    pub discord_fix_roles: Option<&'a str>,
    /// `DISCORD_CONTEXTUALIZE_ROLES`
    pub discord_contextualize_roles: Option<&'a str>,
    /// `JOBS_PER_USER_PER_HOUR`
    pub jobs_per_hour: Option<&'a str>,
}

fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn snowflakes(setting: &'static str, value: Option<&str>) -> Result<Vec<Snowflake>, PolicyError> {
    list(value)
        .map(|s| {
            Snowflake::parse(s).map_err(|e| PolicyError {
                setting,
                problem: e.to_string(),
            })
        })
        .collect()
}

impl AccessPolicy {
    /// Builds the policy from settings, validating each.
    pub fn from_settings(s: &PolicySettings<'_>) -> Result<Self, PolicyError> {
        let github_repos = list(s.github_repos)
            .map(|r| {
                RepoFullName::parse(r).map_err(|e| PolicyError {
                    setting: "GITHUB_REPOS",
                    problem: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut github_associations: Vec<String> = list(s.github_associations)
            .map(str::to_ascii_uppercase)
            .collect();
        if github_associations.is_empty() {
            github_associations = DEFAULT_ASSOCIATIONS
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
        }
        let jobs_per_hour = match s.jobs_per_hour.map(str::trim).filter(|v| !v.is_empty()) {
            None => DEFAULT_JOBS_PER_HOUR,
            Some(v) => v.parse().map_err(|_| PolicyError {
                setting: "JOBS_PER_USER_PER_HOUR",
                problem: "expected a whole number".into(),
            })?,
        };
        Ok(Self {
            github_repos,
            github_associations,
            github_bot_login: s
                .github_bot_login
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            discord_guilds: snowflakes("DISCORD_GUILDS", s.discord_guilds)?,
            discord_fix_roles: snowflakes("DISCORD_FIX_ROLES", s.discord_fix_roles)?,
            discord_contextualize_roles: snowflakes(
                "DISCORD_CONTEXTUALIZE_ROLES",
                s.discord_contextualize_roles,
            )?,
            jobs_per_hour,
        })
    }

    /// Whether a GitHub repository is served.
    pub fn serves_repo(&self, repo: &RepoFullName) -> bool {
        self.github_repos
            .iter()
            .any(|r| r.as_str().eq_ignore_ascii_case(repo.as_str()))
    }

    /// Whether a commenter with this `author_association` is trusted without asking GitHub for
    /// their permission on the repository.
    pub fn github_association_allowed(&self, association: &str) -> bool {
        self.github_associations
            .iter()
            .any(|a| a.eq_ignore_ascii_case(association))
    }

    /// Whether a Discord member with these roles, in this guild, may run `command`.
    pub fn discord_allows(
        &self,
        guild: &Snowflake,
        roles: &[Snowflake],
        command: Command,
    ) -> Result<(), Refusal> {
        if !self.discord_guilds.contains(guild) {
            return Err(Refusal::NotServed);
        }
        let needed = match command {
            Command::Fix | Command::Review => &self.discord_fix_roles,
            Command::Contextualize if self.discord_contextualize_roles.is_empty() => return Ok(()),
            Command::Contextualize => &self.discord_contextualize_roles,
            Command::Selftest => return Err(Refusal::MissingRole(command)),
        };
        if roles.iter().any(|r| needed.contains(r)) {
            Ok(())
        } else {
            Err(Refusal::MissingRole(command))
        }
    }
}

/// Why a request was refused. Its text is what the requester reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// This server or repository is not configured for bugbot.
    #[error("bugbot is not set up for this server or repository.")]
    NotServed,
    /// The requester lacks the role the command needs.
    #[error("Sorry, you don't have a role that may run `{}` here. Ask a maintainer if you need it.", .0.as_str())]
    MissingRole(Command),
    /// Too many jobs this hour.
    #[error(
        "You've started {0} bugbot jobs in the last hour, the most allowed. Please try again later."
    )]
    RateLimited(u32),
}

/// The per-user limit's window: jobs admitted in the last hour (a sliding window).
pub const RATE_WINDOW_MS: u64 = 3_600_000;

/// The key the per-user limit counts under: the same person on two platforms counts twice.
pub fn rate_key(platform: &str, user_id: &str) -> String {
    format!("{platform}:{user_id}")
}

/// Whether one more job fits under the limit, given how many this user started in the window.
pub fn within_rate_limit(jobs_per_hour: u32, already: u32) -> Result<(), Refusal> {
    if already >= jobs_per_hour {
        Err(Refusal::RateLimited(jobs_per_hour))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::from_settings(&PolicySettings {
            github_repos: Some("acme/web-app, acme/api"),
            discord_guilds: Some("100"),
            discord_fix_roles: Some("7,8"),
            ..Default::default()
        })
        .unwrap()
    }

    fn sf(s: &str) -> Snowflake {
        Snowflake::parse(s).unwrap()
    }

    #[test]
    fn defaults() {
        let p = policy();
        assert_eq!(
            p.github_associations,
            vec!["OWNER", "MEMBER", "COLLABORATOR"]
        );
        assert_eq!(p.jobs_per_hour, DEFAULT_JOBS_PER_HOUR);
        assert!(p.github_association_allowed("member"));
        assert!(!p.github_association_allowed("CONTRIBUTOR"));
        assert!(!p.github_association_allowed("NONE"));
    }

    #[test]
    fn repositories() {
        let p = policy();
        assert!(p.serves_repo(&RepoFullName::parse("Acme/Web-App").unwrap()));
        assert!(!p.serves_repo(&RepoFullName::parse("acme/other").unwrap()));
    }

    #[test]
    fn discord_roles() {
        let p = policy();
        let guild = sf("100");
        assert_eq!(p.discord_allows(&guild, &[sf("8")], Command::Fix), Ok(()));
        assert_eq!(
            p.discord_allows(&guild, &[sf("9")], Command::Fix),
            Err(Refusal::MissingRole(Command::Fix))
        );
        assert_eq!(
            p.discord_allows(&guild, &[], Command::Contextualize),
            Ok(())
        );
        assert_eq!(
            p.discord_allows(&sf("101"), &[sf("8")], Command::Fix),
            Err(Refusal::NotServed)
        );
        let strict = AccessPolicy {
            discord_contextualize_roles: vec![sf("5")],
            ..policy()
        };
        assert!(
            strict
                .discord_allows(&guild, &[sf("8")], Command::Contextualize)
                .is_err()
        );
        assert!(
            strict
                .discord_allows(&guild, &[sf("5")], Command::Contextualize)
                .is_ok()
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let e = AccessPolicy::from_settings(&PolicySettings {
            github_repos: Some("not a repo"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("configuration GITHUB_REPOS"));
        let e = AccessPolicy::from_settings(&PolicySettings {
            jobs_per_hour: Some("lots"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("JOBS_PER_USER_PER_HOUR"));
    }

    #[test]
    fn rate_limit() {
        assert!(within_rate_limit(2, 1).is_ok());
        assert_eq!(within_rate_limit(2, 2), Err(Refusal::RateLimited(2)));
        assert_eq!(rate_key("discord", "42"), "discord:42");
        assert_ne!(rate_key("discord", "42"), rate_key("github", "42"));
    }
}
