//! `scripts/register-commands`: registers `/bugbot` and the two message commands with Discord —
//! globally, or for one guild (`--guild`, instant, good for trying bugbot out). Idempotent: when the
//! registered commands already are bugbot's, nothing is sent.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use bugbot_shared::discord::command_definitions;
use bugbot_shared::discord_api::{DiscordApi, commands_match, parse_commands};
use bugbot_shared::http::{HttpRequest, HttpResponse, Method};
use bugbot_shared::ids::Snowflake;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Register bugbot's Discord commands (idempotent)")]
struct Args {
    /// The Discord application id (default: the local stack's).
    #[arg(long, env = "DISCORD_APPLICATION_ID")]
    application_id: Option<String>,
    /// The bot token (default: the local stack's test-only token).
    #[arg(long, env = "DISCORD_BOT_TOKEN", hide_env_values = true)]
    bot_token: Option<String>,
    /// Discord's API (default: the local stack's DISCORD_API_URL, else https://discord.com/api/v10).
    #[arg(long, env = "DISCORD_API_URL")]
    api_url: Option<String>,
    /// Register for this guild only (instant) instead of globally (Discord may take up to an hour).
    #[arg(long)]
    guild: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let local = bugbot_ops::local_value;
    let app = args
        .application_id
        .or_else(|| local("DISCORD_APPLICATION_ID"))
        .context("set DISCORD_APPLICATION_ID")?;
    let app = Snowflake::parse(&app).context("DISCORD_APPLICATION_ID")?;
    let token = args
        .bot_token
        .or_else(|| local("DISCORD_BOT_TOKEN"))
        .context("set DISCORD_BOT_TOKEN")?;
    let base = args
        .api_url
        .or_else(|| local("DISCORD_API_URL"))
        .unwrap_or_else(|| "https://discord.com/api/v10".into());
    let guild = args
        .guild
        .as_deref()
        .map(Snowflake::parse)
        .transpose()
        .context("--guild")?;
    let api = DiscordApi::new(&base, &token);
    let http = reqwest::Client::new();
    let wanted = command_definitions();
    let scope = guild
        .as_ref()
        .map_or_else(|| "globally".to_owned(), |g| format!("in guild {g}"));

    let registered = parse_commands(&send(&http, api.list_commands(&app, guild.as_ref())).await?)
        .map_err(|e| anyhow::anyhow!("listing the registered commands: {e}"))?;
    if commands_match(&registered, &wanted) {
        println!("bugbot's commands are already registered {scope}; nothing changed.");
        return Ok(());
    }
    let answer = send(&http, api.put_commands(&app, guild.as_ref(), &wanted)).await?;
    let now = parse_commands(&answer).map_err(|e| anyhow::anyhow!("registering: {e}"))?;
    let names: Vec<&str> = now
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    if !commands_match(&now, &wanted) {
        bail!("Discord answered with other commands than were sent: {names:?}");
    }
    println!("Registered {scope}: {}", names.join(", "));
    Ok(())
}

async fn send(http: &reqwest::Client, req: HttpRequest) -> Result<HttpResponse> {
    let method = match req.method {
        Method::Get => reqwest::Method::GET,
        Method::Put => reqwest::Method::PUT,
        Method::Post => reqwest::Method::POST,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    };
    let mut r = http.request(method, &req.url);
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    if let Some(body) = req.body.clone() {
        r = r.body(body);
    }
    let response = r
        .send()
        .await
        .with_context(|| format!("cannot reach {}", req.describe()))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(HttpResponse {
        status,
        retry_after,
        body: response.text().await?,
        ..Default::default()
    })
}
