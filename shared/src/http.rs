//! Requests as plain values, responses as plain values, and what a failed call means.
//!
//! API clients in this crate build an [`HttpRequest`] and parse an [`HttpResponse`]; the Workers
//! send them with `worker::Fetch`, native code with `reqwest`. Nothing here performs I/O.

use serde::{Deserialize, Serialize};

/// HTTP method of an outgoing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PATCH
    Patch,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// Which outside service a call goes to (for errors, logs and call counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Discord's HTTP API.
    Discord,
    /// Linear's GraphQL API.
    Linear,
    /// PostHog's REST API.
    Posthog,
    /// GitHub's REST API.
    Github,
    /// The executor container.
    Executor,
    /// Workers KV, bugbot's own state (its failures are treated like a service's: retried).
    Kv,
}

impl Service {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discord => "discord",
            Self::Linear => "linear",
            Self::Posthog => "posthog",
            Self::Github => "github",
            Self::Executor => "executor",
            Self::Kv => "kv",
        }
    }
}

/// A request ready to send. Headers may hold credentials: never log a request as a whole.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Which service this goes to.
    pub service: Service,
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Body (JSON text), if any.
    pub body: Option<String>,
}

impl std::fmt::Debug for HttpRequest {
    // Headers carry tokens; only say where the request goes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.url)
    }
}

impl HttpRequest {
    /// A request without body.
    pub fn new(service: Service, method: Method, url: impl Into<String>) -> Self {
        Self {
            service,
            method,
            url: url.into(),
            headers: vec![("user-agent".into(), user_agent(service).into())],
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets a JSON body (and its content type).
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self.body = Some(body.to_string());
        self
    }

    /// The method and the URL without its query (which may name people), for logs.
    pub fn describe(&self) -> String {
        let path = self.url.split('?').next().unwrap_or_default();
        format!("{} {}", self.method.as_str(), path)
    }
}

/// What bugbot says it is, on every call.
pub const USER_AGENT: &str = "bugbot (+https://github.com/bugbot)";

/// What bugbot says it is to Discord, in the form Discord requires of bots:
/// `DiscordBot ($url, $versionNumber)`.
pub const DISCORD_USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/bugbot, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// The `User-Agent` of a call to `service`.
pub fn user_agent(service: Service) -> &'static str {
    match service {
        Service::Discord => DISCORD_USER_AGENT,
        _ => USER_AGENT,
    }
}

/// A response as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The `Retry-After` header, if present (seconds or an HTTP date; only seconds are used).
    pub retry_after: Option<String>,
    /// Body text.
    pub body: String,
    /// GitHub's `x-ratelimit-remaining`, if present.
    pub ratelimit_remaining: Option<String>,
    /// GitHub's `x-ratelimit-reset` (Unix seconds), if present.
    pub ratelimit_reset: Option<String>,
    /// When the answer arrived, in Unix seconds (to turn a reset time into a wait); 0 if unknown.
    pub received_at_secs: u64,
}

impl HttpResponse {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses the JSON body of a successful response; a non-2xx status becomes a classified error.
    pub fn json<T: serde::de::DeserializeOwned>(&self, service: Service) -> Result<T, ApiError> {
        if !self.is_success() {
            return Err(ApiError::from_status(service, self));
        }
        serde_json::from_str(&self.body).map_err(|e| ApiError::Permanent {
            service,
            status: Some(self.status),
            message: format!("unexpected answer: {e}"),
        })
    }
}

/// A failed call, classified: transient failures are retried, permanent ones end the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Worth retrying: a network failure, a 5xx, a 429.
    #[error("{service} is unavailable ({}): {message}", status_text(*.status))]
    Transient {
        /// Which service.
        service: Service,
        /// Status, when one was received.
        status: Option<u16>,
        /// The service's `Retry-After`, in seconds.
        retry_after_secs: Option<u32>,
        /// What happened (never holds a secret).
        message: String,
    },
    /// Retrying will not help: a 4xx other than 429, a missing team, a refused permission.
    #[error("{service} refused ({}): {message}", status_text(*.status))]
    Permanent {
        /// Which service.
        service: Service,
        /// Status, when one was received.
        status: Option<u16>,
        /// What happened (never holds a secret).
        message: String,
    },
}

fn status_text(status: Option<u16>) -> String {
    status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"))
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// GitHub's advice for a secondary rate limit without `Retry-After`: wait at least a minute.
pub const GITHUB_SECONDARY_LIMIT_WAIT_SECS: u32 = 60;

/// Longest piece of an error body kept in a message.
const MAX_ERROR_BODY: usize = 300;

impl ApiError {
    /// Classifies a non-2xx response. GitHub sends its rate limits as 403 as well as 429: a 403
    /// with `x-ratelimit-remaining: 0` (the primary limit; the wait runs to `x-ratelimit-reset`) or
    /// a "secondary rate limit" message (at least a minute, unless `Retry-After` says otherwise) is
    /// transient like a 429.
    pub fn from_status(service: Service, response: &HttpResponse) -> Self {
        let (snippet, _) = crate::job::truncate(response.body.trim(), MAX_ERROR_BODY);
        let status = response.status;
        let retry_after = response.retry_after.as_deref().and_then(parse_retry_after);
        let github_limited = service == Service::Github
            && (status == 403 || status == 429)
            && (response.ratelimit_remaining.as_deref().map(str::trim) == Some("0")
                || response
                    .body
                    .to_ascii_lowercase()
                    .contains("secondary rate limit"));
        if github_limited {
            let until_reset = response
                .ratelimit_reset
                .as_deref()
                .and_then(|r| r.trim().parse::<u64>().ok())
                .filter(|_| response.received_at_secs > 0)
                .map(|reset| reset.saturating_sub(response.received_at_secs).max(1));
            let wait = retry_after
                .or_else(|| until_reset.map(|w| u32::try_from(w).unwrap_or(u32::MAX)))
                .unwrap_or(GITHUB_SECONDARY_LIMIT_WAIT_SECS);
            return Self::Transient {
                service,
                status: Some(status),
                retry_after_secs: Some(wait),
                message: format!("rate limited: {snippet}"),
            };
        }
        if status == 429 || status >= 500 || status == 408 {
            Self::Transient {
                service,
                status: Some(status),
                retry_after_secs: retry_after,
                message: snippet,
            }
        } else {
            Self::Permanent {
                service,
                status: Some(status),
                message: snippet,
            }
        }
    }

    /// A call that got no answer (connection refused, reset, DNS): transient.
    pub fn network(service: Service, message: impl Into<String>) -> Self {
        Self::Transient {
            service,
            status: None,
            retry_after_secs: None,
            message: message.into(),
        }
    }

    /// A permanent failure that is not an HTTP status (a missing team, a missing setting).
    pub fn permanent(service: Service, message: impl Into<String>) -> Self {
        Self::Permanent {
            service,
            status: None,
            message: message.into(),
        }
    }

    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The service's requested wait, if any.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::Transient {
                retry_after_secs, ..
            } => *retry_after_secs,
            Self::Permanent { .. } => None,
        }
    }

    /// The HTTP status, when one was received.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Transient { status, .. } | Self::Permanent { status, .. } => *status,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these APIs and is ignored).
/// Discord sends fractional seconds; they are rounded up.
pub fn parse_retry_after(value: &str) -> Option<u32> {
    let v: f64 = value.trim().parse().ok()?;
    if !(0.0..=86_400.0).contains(&v) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(v.ceil() as u32)
}

/// Delay before the next delivery of a transiently failed job: exponential in the attempt
/// (`base · 2^(attempt-1)`, capped), with "equal jitter" (half fixed, half random, so retries from
/// many jobs spread out), and never shorter than the service's `Retry-After`.
/// `random` is a number in `[0, 1)` supplied by the caller (this crate has no randomness).
pub fn backoff_seconds(
    attempt: u32,
    base_secs: u32,
    cap_secs: u32,
    retry_after: Option<u32>,
    random: f64,
) -> u32 {
    let exp = base_secs
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap_secs)
        .max(1);
    let half = exp / 2;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let jitter = (f64::from(exp - half) * random.clamp(0.0, 0.999_999)).floor() as u32;
    let delay = half + jitter;
    delay
        .max(retry_after.unwrap_or(0))
        .clamp(1, crate::runner::MAX_RETRY_DELAY_SECS)
}

/// Percent-encodes a query or path component.
pub fn encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for b in component.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, retry_after: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: "nope".into(),
            ..Default::default()
        }
    }

    #[test]
    fn classifies_statuses() {
        assert!(ApiError::from_status(Service::Linear, &resp(500, None)).is_transient());
        assert!(ApiError::from_status(Service::Linear, &resp(502, None)).is_transient());
        let e = ApiError::from_status(Service::Linear, &resp(429, Some("2")));
        assert!(e.is_transient());
        assert_eq!(e.retry_after_secs(), Some(2));
        assert!(!ApiError::from_status(Service::Linear, &resp(400, None)).is_transient());
        assert!(!ApiError::from_status(Service::Linear, &resp(403, None)).is_transient());
        assert!(!ApiError::from_status(Service::Linear, &resp(404, None)).is_transient());
        assert!(ApiError::network(Service::Posthog, "reset").is_transient());
    }

    #[test]
    fn githubs_rate_limits_are_transient_whatever_the_status() {
        let primary = HttpResponse {
            status: 403,
            body: r#"{"message":"API rate limit exceeded for installation ID 1."}"#.into(),
            ratelimit_remaining: Some("0".into()),
            ratelimit_reset: Some("1000120".into()),
            received_at_secs: 1_000_000,
            ..Default::default()
        };
        let e = ApiError::from_status(Service::Github, &primary);
        assert!(e.is_transient());
        assert_eq!(e.retry_after_secs(), Some(120));

        let secondary = HttpResponse {
            status: 403,
            body: r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#.into(),
            ..Default::default()
        };
        let e = ApiError::from_status(Service::Github, &secondary);
        assert!(e.is_transient());
        assert_eq!(e.retry_after_secs(), Some(GITHUB_SECONDARY_LIMIT_WAIT_SECS));
        let with_header = HttpResponse {
            retry_after: Some("30".into()),
            ..secondary.clone()
        };
        assert_eq!(
            ApiError::from_status(Service::Github, &with_header).retry_after_secs(),
            Some(30)
        );

        // A 403 that is a refusal stays permanent, and other services' 403s are refusals.
        let refused = HttpResponse {
            status: 403,
            body: r#"{"message":"Resource not accessible by integration"}"#.into(),
            ratelimit_remaining: Some("4999".into()),
            ..Default::default()
        };
        assert!(!ApiError::from_status(Service::Github, &refused).is_transient());
        assert!(!ApiError::from_status(Service::Linear, &secondary).is_transient());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(2));
        assert_eq!(parse_retry_after(" 1.2 "), Some(2));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        assert_eq!(backoff_seconds(1, 2, 300, None, 0.0), 1);
        assert_eq!(backoff_seconds(1, 2, 300, None, 0.99), 1);
        assert_eq!(backoff_seconds(3, 2, 300, None, 0.0), 4);
        assert!(backoff_seconds(3, 2, 300, None, 0.99) <= 8);
        assert!(backoff_seconds(30, 2, 300, None, 0.99) <= 300);
        assert!(backoff_seconds(30, 2, 300, None, 0.0) >= 150);
        assert_eq!(backoff_seconds(1, 2, 300, Some(7), 0.0), 7);
    }

    #[test]
    fn discord_gets_the_user_agent_form_it_requires() {
        let r = HttpRequest::new(
            Service::Discord,
            Method::Get,
            "https://discord.com/api/v10/x",
        );
        let ua = &r.headers.iter().find(|(k, _)| k == "user-agent").unwrap().1;
        assert!(ua.starts_with("DiscordBot (https://"), "{ua}");
        assert!(
            ua.ends_with(&format!(", {})", env!("CARGO_PKG_VERSION"))),
            "{ua}"
        );
        let r = HttpRequest::new(Service::Github, Method::Get, "https://api.github.com/x");
        assert!(
            r.headers
                .contains(&("user-agent".into(), USER_AGENT.into()))
        );
    }

    #[test]
    fn debug_hides_headers() {
        let r = HttpRequest::new(Service::Linear, Method::Post, "https://x/graphql?email=a@b")
            .header("authorization", "secret-key");
        assert!(!format!("{r:?}").contains("secret-key"));
        assert_eq!(r.describe(), "POST https://x/graphql");
        assert_eq!(encode("a b@c.d"), "a%20b%40c.d");
    }
}
