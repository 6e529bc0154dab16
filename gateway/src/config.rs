//! The gateway's configuration, read from the Worker's vars and secrets.
//! Every name is documented in the README's configuration table.

use crate::error::GatewayError;
use bugbot_shared::authz::{AccessPolicy, PolicySettings};
use worker::Env;

/// KV namespace binding shared with the consumer.
pub const KV_BINDING: &str = "BUGBOT_KV";
/// Queue producer binding for job messages.
pub const QUEUE_BINDING: &str = "JOBS";

/// A configured string (var or secret). Missing configuration is our fault, not the sender's:
/// it is logged by name and answered as 503.
pub fn string(env: &Env, name: &str) -> Result<String, GatewayError> {
    optional(env, name)
        .ok_or_else(|| GatewayError::Unavailable(format!("configuration {name} is not set")))
}

/// An optional configured string; empty counts as unset.
pub fn optional(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

/// The access policy (who may ask for what).
pub fn policy(env: &Env) -> Result<AccessPolicy, GatewayError> {
    let get = |n: &str| optional(env, n);
    let (repos, assoc, bot, guilds, fix, ctx, rate) = (
        get("GITHUB_REPOS"),
        get("GITHUB_TRIGGER_ASSOCIATIONS"),
        get("GITHUB_BOT_LOGIN"),
        get("DISCORD_GUILDS"),
        get("DISCORD_FIX_ROLES"),
        get("DISCORD_CONTEXTUALIZE_ROLES"),
        get("JOBS_PER_USER_PER_HOUR"),
    );
    AccessPolicy::from_settings(&PolicySettings {
        github_repos: repos.as_deref(),
        github_associations: assoc.as_deref(),
        github_bot_login: bot.as_deref(),
        discord_guilds: guilds.as_deref(),
        discord_fix_roles: fix.as_deref(),
        discord_contextualize_roles: ctx.as_deref(),
        jobs_per_hour: rate.as_deref(),
    })
    .map_err(|e| GatewayError::Unavailable(e.to_string()))
}
