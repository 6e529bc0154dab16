//! The executor, one interface with two transports: the Container binding (`EXECUTOR`, production)
//! or a URL (`EXECUTOR_URL`, the local executor process). Either way the answer is the executor's
//! NDJSON event stream, read line by line as it arrives.

use crate::config::var;
use bugbot_shared::executor::{Event, FixRequest};
use bugbot_shared::http::{ApiError, Service};
use futures::StreamExt;
use worker::{Env, Headers, Method, Request, RequestInit, Response};

/// Longest event line accepted (a `done` with a long summary stays far below).
const MAX_LINE: usize = 256 * 1024;

/// Starts job `job`'s fix; the returned stream yields the executor's events.
pub async fn start(env: &Env, job: &str, request: &FixRequest) -> Result<EventStream, ApiError> {
    let body = serde_json::to_string(request)
        .map_err(|e| ApiError::permanent(Service::Executor, e.to_string()))?;
    let response = post(env, job, "/v1/fix", body).await?;
    EventStream::new(response).await
}

/// Asks the executor to stop job `job`'s run `run_id` (one not started yet ends as soon as it is
/// asked for); the run's stream then ends with a `stopped` result.
pub async fn stop(env: &Env, job: &str, run_id: &str, reason: &str) -> Result<(), ApiError> {
    let body = serde_json::json!({ "reason": reason }).to_string();
    let path = format!("/v1/runs/{run_id}/stop");
    let mut response = post(env, job, &path, body).await?;
    let status = response.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let answer = bugbot_shared::http::HttpResponse {
        status,
        retry_after: None,
        body: response.text().await.unwrap_or_default(),
        ..Default::default()
    };
    Err(ApiError::from_status(Service::Executor, &answer))
}

/// POSTs `body` to the executor's `path`, through whichever transport is configured.
async fn post(env: &Env, job: &str, path: &str, body: String) -> Result<Response, ApiError> {
    let token = var(env, "EXECUTOR_TOKEN").ok_or_else(|| {
        ApiError::permanent(Service::Executor, "EXECUTOR_TOKEN is not configured")
    })?;
    let headers = Headers::new();
    let _ = headers.set("authorization", &format!("Bearer {token}"));
    let _ = headers.set("content-type", "application/json");
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let unreachable = |_| ApiError::network(Service::Executor, "the executor did not answer");
    Ok(match var(env, "EXECUTOR_URL") {
        Some(url) => {
            let req =
                Request::new_with_init(&format!("{}{path}", url.trim_end_matches('/')), &init)
                    .map_err(|_| {
                        ApiError::permanent(Service::Executor, "EXECUTOR_URL is not a valid URL")
                    })?;
            worker::Fetch::Request(req)
                .send()
                .await
                .map_err(unreachable)?
        }
        None => {
            if env.durable_object("EXECUTOR").is_err() {
                return Err(ApiError::permanent(
                    Service::Executor,
                    "neither EXECUTOR_URL nor the EXECUTOR binding is configured",
                ));
            }
            let stub = crate::container::stub(env, job).map_err(unreachable)?;
            let req = Request::new_with_init(&format!("http://executor{path}"), &init)
                .map_err(unreachable)?;
            stub.fetch_with_request(req).await.map_err(unreachable)?
        }
    })
}

/// The note for the report when job `job`'s container was refused network requests; `None` when
/// none were, or the executor is a local process (`EXECUTOR_URL`: its network is the host's).
pub async fn refused_egress(env: &Env, job: &str) -> Option<String> {
    if var(env, "EXECUTOR_URL").is_some() {
        return None;
    }
    match crate::container::refused_hosts(env, job).await {
        Ok(refused) => bugbot_shared::egress::refused_note(&refused),
        Err(e) => {
            crate::log::error("refused hosts unreadable", &[("error", &e.to_string())]);
            None
        }
    }
}

/// Job `job`'s run is over and its result is in the job's record (a redelivery reads it there):
/// its container is stopped shortly, rather than at the sleep timeout an hour on, during which it
/// would count against `max_instances`, and bill. Nothing for a local executor process.
pub async fn run_over(env: &Env, job: &str) {
    if var(env, "EXECUTOR_URL").is_some() {
        return;
    }
    if let Err(e) = crate::container::run_over(env, job).await {
        // The container then stops at its sleep timeout.
        crate::log::error("run end not passed on", &[("error", &e.to_string())]);
    }
}

/// The executor's events, as they arrive.
pub struct EventStream {
    body: worker::ByteStream,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl EventStream {
    async fn new(mut response: Response) -> Result<Self, ApiError> {
        let status = response.status_code();
        if !(200..300).contains(&status) {
            let text = response.text().await.unwrap_or_default();
            let answer = bugbot_shared::http::HttpResponse {
                status,
                retry_after: None,
                body: text,
                ..Default::default()
            };
            return Err(ApiError::from_status(Service::Executor, &answer));
        }
        let body = response.stream().map_err(|_| {
            ApiError::network(Service::Executor, "the executor's answer has no body")
        })?;
        Ok(Self {
            body,
            buffer: Vec::new(),
        })
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Event>, ApiError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                if line.trim().is_empty() {
                    continue;
                }
                return serde_json::from_str(line.trim()).map(Some).map_err(|e| {
                    ApiError::permanent(Service::Executor, format!("unreadable event: {e}"))
                });
            }
            if self.buffer.len() > MAX_LINE {
                return Err(ApiError::permanent(
                    Service::Executor,
                    "an event line was too long",
                ));
            }
            let idle = worker::Delay::from(std::time::Duration::from_secs(
                bugbot_shared::executor::STREAM_IDLE_SECS,
            ));
            let next = match futures::future::select(self.body.next(), idle).await {
                futures::future::Either::Left((next, _)) => next,
                futures::future::Either::Right(_) => {
                    return Err(ApiError::network(
                        Service::Executor,
                        "the executor's stream went silent (no heartbeat)",
                    ));
                }
            };
            match next {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(_)) => {
                    return Err(ApiError::network(
                        Service::Executor,
                        "the executor's stream broke off",
                    ));
                }
                None if self.buffer.is_empty() => return Ok(None),
                None => self.buffer.push(b'\n'),
            }
        }
    }
}
