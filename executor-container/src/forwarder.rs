//! The model API forwarder: Claude Code never holds the Anthropic key. Each run gets a grant — a
//! random placeholder key, valid while the run lasts and for a bounded number of requests — and
//! talks to this forwarder on loopback (`ANTHROPIC_BASE_URL`). The forwarder accepts only the
//! Messages API, swaps the placeholder for the real key, and streams the answer back. An agent
//! that runs code and reads everything it can finds a key that stops working when its run ends.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq as _;

/// Where the real API is when no base URL is configured.
pub const ANTHROPIC_API: &str = "https://api.anthropic.com";

/// Request headers passed on to the API; everything else (the placeholder key above all) is not.
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "user-agent",
    "x-stainless-retry-count",
    "x-stainless-timeout",
];

/// The largest request body passed on (a long conversation with file contents).
const MAX_BODY: usize = 32 * 1024 * 1024;

#[derive(Debug)]
struct Grant {
    remaining: u32,
    /// Messages requests let through (each may have cost money; token counts are free).
    asked: u32,
}

#[derive(Debug)]
struct Inner {
    upstream: String,
    api_key: String,
    grants: Mutex<HashMap<String, Grant>>,
    client: reqwest::Client,
}

/// The forwarder, listening on loopback.
#[derive(Debug, Clone)]
pub struct Forwarder {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

/// A run's permission to use the model; revoked when dropped.
#[derive(Debug)]
pub struct GrantGuard {
    key: String,
    inner: Arc<Inner>,
}

impl GrantGuard {
    /// The placeholder key Claude Code sends.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether a Messages request of this run was let through to the API: until one is, the run
    /// has cost nothing, whatever Claude Code reported (or failed to).
    pub fn model_asked(&self) -> bool {
        self.inner
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.key)
            .is_some_and(|g| g.asked > 0)
    }
}

impl Drop for GrantGuard {
    fn drop(&mut self) {
        self.inner
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl Forwarder {
    /// Starts the forwarder on a free loopback port.
    pub async fn start(upstream: Option<String>, api_key: String) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            upstream: upstream
                .unwrap_or_else(|| ANTHROPIC_API.into())
                .trim_end_matches('/')
                .to_owned(),
            api_key,
            grants: Mutex::default(),
            client: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(std::io::Error::other)?,
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(inner.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the model forwarder stopped");
            }
        });
        Ok(Self { addr, inner })
    }

    /// The base URL Claude Code is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new grant for one run, good for `requests` model requests.
    pub fn grant(&self, requests: u32) -> GrantGuard {
        let mut bytes = [0u8; 24];
        // Without randomness no key could be unguessable: fail the run rather than weaken it.
        getrandom::getrandom(&mut bytes).unwrap_or_else(|e| panic!("no randomness: {e}"));
        let key = format!("bugbot-run-{}", hex::encode(bytes));
        self.inner
            .grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key.clone(),
                Grant {
                    remaining: requests,
                    asked: 0,
                },
            );
        GrantGuard {
            key,
            inner: self.inner.clone(),
        }
    }
}

fn refuse(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "type": "error",
            "error": { "type": kind, "message": message }
        })),
    )
        .into_response()
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownKey,
    Spent,
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Self::UnknownKey => refuse(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "no run holds this key",
            ),
            Self::Spent => refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "this run has used all the model requests bugbot allows it",
            ),
        }
    }
}

/// Takes one use of the grant whose key the request presents; `costly` marks a Messages request
/// (counted as asked from here on, even if it fails later: the budgets count up, never down).
fn admit(inner: &Inner, headers: &HeaderMap, costly: bool) -> Result<(), Refusal> {
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .unwrap_or_default();
    let mut grants = inner.grants.lock().unwrap_or_else(|p| p.into_inner());
    let grant = grants
        .iter_mut()
        .find(|(key, _)| bool::from(key.as_bytes().ct_eq(presented.as_bytes())))
        .map(|(_, g)| g);
    match grant {
        None => Err(Refusal::UnknownKey),
        Some(g) if g.remaining == 0 => Err(Refusal::Spent),
        Some(g) => {
            g.remaining -= 1;
            g.asked += u32::from(costly);
            Ok(())
        }
    }
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if parts.method != axum::http::Method::POST
        || !matches!(path, "/v1/messages" | "/v1/messages/count_tokens")
    {
        return refuse(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "only the Messages API is available",
        );
    }
    if let Err(refused) = admit(&inner, &parts.headers, path == "/v1/messages") {
        return refused.response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "the request is too large",
        );
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut upstream = inner
        .client
        .post(format!("{}{path}{query}", inner.upstream))
        .header("x-api-key", &inner.api_key)
        .body(body);
    for name in FORWARDED_HEADERS {
        if let Some(v) = parts.headers.get(*name) {
            upstream = upstream.header(*name, v);
        }
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "the model API could not be reached");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "the model API could not be reached",
            );
        }
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        let name = name.as_str();
        let passed = matches!(
            name,
            "content-type" | "request-id" | "retry-after" | "x-should-retry"
        ) || name.starts_with("anthropic-");
        if passed && let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            response = response.header(name, v);
        }
    }
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "api_error", "bad answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_str(key).unwrap());
        h
    }

    #[tokio::test]
    async fn a_grant_works_for_its_requests_and_not_after_it_is_dropped() {
        let f = Forwarder::start(Some("http://127.0.0.1:9".into()), "real".into())
            .await
            .unwrap();
        let grant = f.grant(2);
        assert!(grant.key().starts_with("bugbot-run-"));
        assert!(admit(&f.inner, &headers(grant.key()), false).is_ok());
        assert!(!grant.model_asked(), "counting tokens costs nothing");
        assert!(admit(&f.inner, &headers(grant.key()), true).is_ok());
        assert!(grant.model_asked());
        assert_eq!(
            admit(&f.inner, &headers(grant.key()), true),
            Err(Refusal::Spent)
        );
        assert_eq!(
            admit(&f.inner, &headers("real"), true),
            Err(Refusal::UnknownKey)
        );
        let other = f.grant(2);
        assert!(!other.model_asked(), "each run counts its own requests");
        let key = grant.key().to_owned();
        drop(grant);
        assert_eq!(
            admit(&f.inner, &headers(&key), true),
            Err(Refusal::UnknownKey)
        );
    }
}
