//! A GitHub client for a repository: with the GitHub App (an installation token, from a JWT
//! signed with the App's key, cached in this isolate until shortly before it expires), or with a
//! personal access token (`GITHUB_TOKEN`) for small setups.

use crate::config::{self, var};
use crate::http::call;
use crate::store;
use bugbot_shared::github_api::{self, GithubApi};
use bugbot_shared::github_app;
use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::ids::RepoFullName;
use bugbot_shared::kv;
use std::cell::RefCell;
use std::collections::HashMap;
use worker::Env;

/// A cached token is replaced this long before it expires (API calls of a step).
const REFRESH_MARGIN_SECS: u64 = 300;

thread_local! {
    /// Installation id → (token, expiry in seconds since the epoch). Memory only: never in KV.
    static TOKENS: RefCell<HashMap<u64, (String, u64)>> = RefCell::new(HashMap::new());
}

/// A client, and the token it uses.
pub async fn client(
    env: &Env,
    repo: &RepoFullName,
    installation: Option<u64>,
) -> Result<(GithubApi, String), ApiError> {
    client_valid_for(env, repo, installation, REFRESH_MARGIN_SECS).await
}

/// A client whose token stays valid at least `secs` more seconds: the executor pushes with it at
/// the end of a run, up to its wall time later.
pub async fn client_valid_for(
    env: &Env,
    repo: &RepoFullName,
    installation: Option<u64>,
    secs: u64,
) -> Result<(GithubApi, String), ApiError> {
    let base = config::github_base(env);
    let token = token(env, &base, repo, installation, secs).await?;
    Ok((GithubApi::new(&base, &token), token))
}

async fn token(
    env: &Env,
    base: &str,
    repo: &RepoFullName,
    installation: Option<u64>,
    valid_for_secs: u64,
) -> Result<String, ApiError> {
    let Some(app_id) = var(env, "GITHUB_APP_ID") else {
        return var(env, "GITHUB_TOKEN").ok_or_else(|| {
            ApiError::permanent(
                Service::Github,
                "neither GITHUB_APP_ID (with GITHUB_APP_PRIVATE_KEY) nor GITHUB_TOKEN is configured",
            )
        });
    };
    let pem = var(env, "GITHUB_APP_PRIVATE_KEY").ok_or_else(|| {
        ApiError::permanent(Service::Github, "GITHUB_APP_PRIVATE_KEY is not configured")
    })?;
    let now = worker::Date::now().as_millis() / 1000;
    let key = github_app::parse_key(&pem)
        .map_err(|e| ApiError::permanent(Service::Github, e.to_string()))?;
    let jwt = github_app::app_jwt(&app_id, &key, now);
    let installation = match installation {
        Some(id) => id,
        None => {
            call(
                github_app::installation_for_repo(base, &jwt, repo),
                github_app::parse_installation,
            )
            .await?
        }
    };
    if let Some(token) = TOKENS.with_borrow(|t| {
        t.get(&installation)
            .filter(|(_, exp)| github_app::still_valid(*exp, now, valid_for_secs))
            .map(|(tok, _)| tok.clone())
    }) {
        return Ok(token);
    }
    let fresh = call(
        github_app::access_token(base, &jwt, installation),
        github_app::parse_access_token,
    )
    .await?;
    let expires = github_app::parse_utc(&fresh.expires_at).unwrap_or(now + 3000);
    TOKENS.with_borrow_mut(|t| t.insert(installation, (fresh.token.clone(), expires)));
    Ok(fresh.token)
}

/// Whether the job's requester may ask for work: `Ok(None)` when they may (or the job came from a
/// trusted association), else `Ok(Some(permission))` with what GitHub shows. GitHub's answer is
/// cached for [`kv::GITHUB_PERMISSION_TTL_SECONDS`].
pub async fn refused_permission(
    env: &Env,
    job: &bugbot_shared::job::JobMessage,
) -> Result<Option<String>, ApiError> {
    let bugbot_shared::job::Source::Github {
        repo,
        installation_id,
        verify_permission: true,
        ..
    } = &job.source
    else {
        return Ok(None);
    };
    let login = &job.requester.name;
    let key = kv::github_permission(repo, login);
    let permission = match store::get_text(env, &key).await? {
        Some(cached) => cached,
        None => {
            let (api, _) = client(env, repo, *installation_id).await?;
            let fresh = call(api.permission(repo, login), github_api::parse_permission).await?;
            store::put_text(env, &key, &fresh, kv::GITHUB_PERMISSION_TTL_SECONDS).await?;
            fresh
        }
    };
    Ok((!github_api::may_trigger(&permission)).then_some(permission))
}

/// Whether the requester was already told, on this issue, that they may not ask.
pub async fn already_told(
    env: &Env,
    job: &bugbot_shared::job::JobMessage,
) -> Result<bool, ApiError> {
    let bugbot_shared::job::Source::Github { repo, number, .. } = &job.source else {
        return Ok(true);
    };
    let key = kv::github_told(repo, *number, &job.requester.name);
    Ok(store::get_text(env, &key).await?.is_some())
}

/// Remembers that the requester was told on this issue. Workers KV is eventually consistent: two
/// refusals on one issue within the same seconds could both be answered; the per-user hourly limit
/// bounds that.
pub async fn remember_told(
    env: &Env,
    job: &bugbot_shared::job::JobMessage,
) -> Result<(), ApiError> {
    let bugbot_shared::job::Source::Github { repo, number, .. } = &job.source else {
        return Ok(());
    };
    let key = kv::github_told(repo, *number, &job.requester.name);
    store::put_text(env, &key, job.id.as_str(), kv::GITHUB_TOLD_TTL_SECONDS).await
}
