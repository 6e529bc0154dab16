//! The gateway's configuration, read from the Worker's vars and secrets.
//! Every name is documented in `docs/configuration.md`.
//!
//! What the webhooks need on every request (the signature keys, the access policy, the mention) is
//! parsed once per isolate: a Worker's configuration cannot change under a running isolate (a new
//! var or secret is a new version, which starts new isolates), and reading and parsing it on each
//! request cost a signed request about a third of what its signature check costs.

use crate::error::GatewayError;
use bugbot_shared::authz::{AccessPolicy, PolicySettings};
use bugbot_shared::github::DEFAULT_MENTION;
use bugbot_shared::signature::{DiscordKeys, WebhookSecrets};
use std::cell::OnceCell;
use std::rc::Rc;
use std::thread::LocalKey;
use worker::Env;

/// A configuration value parsed once per isolate; a failure is kept too (as its detail), since
/// the configuration will not change until a new version starts new isolates.
type Parsed<T> = OnceCell<Result<Rc<T>, String>>;

thread_local! {
    static DISCORD_KEYS: Parsed<DiscordKeys> = const { OnceCell::new() };
    static GITHUB_SECRETS: Parsed<WebhookSecrets> = const { OnceCell::new() };
    static POLICY: Parsed<AccessPolicy> = const { OnceCell::new() };
    static GITHUB_MENTION: Parsed<String> = const { OnceCell::new() };
}

fn once<T>(
    slot: &'static LocalKey<Parsed<T>>,
    parse: impl FnOnce() -> Result<T, GatewayError>,
) -> Result<Rc<T>, GatewayError> {
    slot.with(|cell| {
        cell.get_or_init(|| parse().map(Rc::new).map_err(GatewayError::detail))
            .clone()
    })
    .map_err(GatewayError::Unavailable)
}

/// Discord's public key(s) (`DISCORD_PUBLIC_KEY`, comma-separated during a rotation).
pub fn discord_keys(env: &Env) -> Result<Rc<DiscordKeys>, GatewayError> {
    once(&DISCORD_KEYS, || {
        DiscordKeys::from_hex_list(&string(env, "DISCORD_PUBLIC_KEY")?)
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    })
}

/// The GitHub App's webhook secret(s) (`GITHUB_WEBHOOK_SECRET`, comma-separated during a rotation).
pub fn github_secrets(env: &Env) -> Result<Rc<WebhookSecrets>, GatewayError> {
    once(&GITHUB_SECRETS, || {
        WebhookSecrets::from_list(&string(env, "GITHUB_WEBHOOK_SECRET")?)
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    })
}

/// The mention that addresses bugbot in GitHub comments (`GITHUB_MENTION`).
pub fn github_mention(env: &Env) -> Rc<String> {
    once(&GITHUB_MENTION, || {
        Ok(optional(env, "GITHUB_MENTION").unwrap_or_else(|| DEFAULT_MENTION.into()))
    })
    .unwrap_or_else(|_| Rc::new(DEFAULT_MENTION.into()))
}

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
pub fn policy(env: &Env) -> Result<Rc<AccessPolicy>, GatewayError> {
    once(&POLICY, || parse_policy(env))
}

fn parse_policy(env: &Env) -> Result<AccessPolicy, GatewayError> {
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
