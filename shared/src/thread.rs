//! Where a job came from, as the consumer needs it: the conversation it belongs to, the URL that
//! links that conversation to a Linear issue, and the KV key caching that link.

use crate::discord_api::channel_url;
use crate::job::{JobMessage, Source};
use crate::kv;

/// The conversation a job belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// URL attached to the Linear issue (the authoritative link, found with `attachmentsForURL`).
    pub url: String,
    /// KV key of the cached link.
    pub mapping_key: String,
    /// How the packet names it ("Discord thread", "GitHub issue acme/web-app#7").
    pub label: String,
}

/// The origin of a job; `None` for operator jobs, which belong to no conversation.
pub fn origin(job: &JobMessage) -> Option<Origin> {
    match &job.source {
        Source::Discord {
            guild_id,
            channel_id,
            ..
        }
        | Source::DiscordMention {
            guild_id,
            channel_id,
            ..
        } => Some(Origin {
            url: channel_url(guild_id, channel_id),
            mapping_key: kv::discord_thread(channel_id),
            label: "Discord thread".into(),
        }),
        Source::Github {
            repo,
            number,
            is_pull_request,
            html_url,
            ..
        } => Some(Origin {
            url: html_url.clone(),
            mapping_key: kv::github_issue(repo, *number),
            label: format!(
                "GitHub {} {repo}#{number}",
                if *is_pull_request {
                    "pull request"
                } else {
                    "issue"
                }
            ),
        }),
        Source::Admin => None,
    }
}
