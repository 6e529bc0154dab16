//! The consumer's configuration, read from the Worker's vars and secrets (`docs/configuration.md`).

use bugbot_shared::discord_api::DiscordApi;
use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::linear::LinearApi;
use bugbot_shared::posthog::PosthogApi;
use worker::Env;

/// Discord's API when `DISCORD_API_URL` is not set.
pub const DISCORD_API_DEFAULT: &str = "https://discord.com/api/v10";
/// Linear's API when `LINEAR_API_URL` is not set.
pub const LINEAR_API_DEFAULT: &str = "https://api.linear.app";
/// PostHog's API (and app) when `POSTHOG_API_URL` is not set.
pub const POSTHOG_API_DEFAULT: &str = "https://us.posthog.com";
/// GitHub's API when `GITHUB_API_URL` is not set.
pub const GITHUB_API_DEFAULT: &str = "https://api.github.com";

/// A var or secret, trimmed; `None` when unset or empty.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(env: &Env, service: Service, name: &str) -> Result<String, ApiError> {
    var(env, name).ok_or_else(|| {
        ApiError::permanent(
            service,
            format!("{name} is not configured (see docs/configuration.md)"),
        )
    })
}

/// Discord's client.
pub fn discord(env: &Env) -> Result<DiscordApi, ApiError> {
    let base = var(env, "DISCORD_API_URL").unwrap_or_else(|| DISCORD_API_DEFAULT.into());
    Ok(DiscordApi::new(
        &base,
        &required(env, Service::Discord, "DISCORD_BOT_TOKEN")?,
    ))
}

/// Linear's client and the team new issues go to.
pub fn linear(env: &Env) -> Result<(LinearApi, String), ApiError> {
    let base = var(env, "LINEAR_API_URL").unwrap_or_else(|| LINEAR_API_DEFAULT.into());
    let key = required(env, Service::Linear, "LINEAR_API_KEY")?;
    let team = required(env, Service::Linear, "LINEAR_TEAM_KEY")?;
    Ok((LinearApi::new(&base, &key), team))
}

/// PostHog's client, or `None` when PostHog is not configured (recordings are then "unknown").
pub fn posthog(env: &Env) -> Option<PosthogApi> {
    let key = var(env, "POSTHOG_API_KEY")?;
    let project = var(env, "POSTHOG_PROJECT_ID")?;
    let base = var(env, "POSTHOG_API_URL").unwrap_or_else(|| POSTHOG_API_DEFAULT.into());
    let app = var(env, "POSTHOG_APP_URL").unwrap_or_else(|| base.clone());
    Some(PosthogApi::new(&base, &app, &project, &key))
}

/// Which repository a Discord channel's reports belong to.
pub fn repo_routing(env: &Env) -> Result<bugbot_shared::fix::RepoRouting, ApiError> {
    bugbot_shared::fix::RepoRouting::parse(
        var(env, "DISCORD_CHANNEL_REPOS").as_deref(),
        var(env, "GITHUB_DEFAULT_REPO").as_deref(),
    )
    .map_err(|e| ApiError::permanent(Service::Github, e))
}

/// The repositories bugbot serves (`GITHUB_REPOS`); a report may only point at these.
pub fn served_repos(env: &Env) -> Vec<bugbot_shared::ids::RepoFullName> {
    var(env, "GITHUB_REPOS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|r| bugbot_shared::ids::RepoFullName::parse(r.trim()).ok())
        .collect()
}

/// Paths Claude Code may change (`ALLOWED_PATHS`, comma-separated; default `src/, app/,
/// components/, pages/`).
pub fn allowed_paths(env: &Env) -> Vec<String> {
    match var(env, "ALLOWED_PATHS") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        None => bugbot_shared::path_policy::DEFAULT_ALLOWED
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
    }
}

/// GitHub's API base URL.
pub fn github_base(env: &Env) -> String {
    var(env, "GITHUB_API_URL").unwrap_or_else(|| GITHUB_API_DEFAULT.into())
}

/// Retry timing (`docs/configuration.md`): the first delay `RETRY_BASE_SECONDS` (default 5),
/// doubling to `RETRY_MAX_SECONDS` (default 900), giving up once a job has been failing for
/// `RETRY_GIVE_UP_AFTER_SECONDS` (default 6 hours).
pub fn retry_policy(env: &Env) -> bugbot_shared::runner::RetryPolicy {
    let default = bugbot_shared::runner::RetryPolicy::default();
    let num = |name: &str, default: u32| {
        var(env, name)
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    bugbot_shared::runner::RetryPolicy {
        base_secs: num("RETRY_BASE_SECONDS", default.base_secs),
        cap_secs: num("RETRY_MAX_SECONDS", default.cap_secs),
        give_up_after_secs: num("RETRY_GIVE_UP_AFTER_SECONDS", default.give_up_after_secs),
    }
}

/// Whether the dev-only hooks are on (`BUGBOT_DEV_ENDPOINTS=true`, only in `dev/local.env`).
pub fn dev_endpoints(env: &Env) -> bool {
    var(env, "BUGBOT_DEV_ENDPOINTS").as_deref() == Some("true")
}

/// The mention that addresses bugbot in GitHub comments (`GITHUB_MENTION`), for hints.
pub fn github_mention(env: &Env) -> String {
    var(env, "GITHUB_MENTION").unwrap_or_else(|| bugbot_shared::github::DEFAULT_MENTION.into())
}

/// How long a fix's executor container stays once the consumer has recorded its run's result (the
/// run is over: the executor pushed and answered, and a redelivery of the job reads the result
/// from the job's record instead of asking the executor): a margin, then its alarm stops it. Until
/// then the container counts against `max_instances`. `EXECUTOR_STOP_AFTER_RUN_SECONDS`, default 60.
pub fn after_run(env: &Env) -> std::time::Duration {
    let seconds = var(env, "EXECUTOR_STOP_AFTER_RUN_SECONDS").and_then(|v| v.parse().ok());
    std::time::Duration::from_secs(seconds.unwrap_or(60))
}
