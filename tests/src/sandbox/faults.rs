//! Injected faults: make a service's next N calls fail with a status, a `Retry-After`, headers
//! (GitHub's rate-limit headers), or slowness — before the call is performed, or after it (the side
//! effect happens and its answer is lost, as when a connection breaks after the server acted).

use super::{SandboxState, Service, error};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// `POST /_sandbox/faults` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Which stand-in misbehaves.
    pub service: Service,
    /// How many of its next calls (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Answer with this status instead of the real answer; absent = answer normally (after the delay).
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` seconds to send with the status.
    #[serde(default)]
    pub retry_after: Option<u32>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Only calls with this method (`POST`); any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Only calls whose path (below the service prefix) ends with this (`/pulls`); any when absent.
    #[serde(default)]
    pub path_suffix: Option<String>,
    /// Only calls whose body contains this text (a GraphQL operation name, say); any when absent.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Perform the call, then answer with the fault instead of the real answer.
    #[serde(default)]
    pub lose_answer: bool,
    /// The error message of the answer (default: "fault injected by the sandbox").
    #[serde(default)]
    pub message: Option<String>,
    /// More headers of the answer (e.g. `x-ratelimit-remaining`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// An armed fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Which stand-in.
    pub service: Service,
    /// Calls still to be affected.
    pub remaining: u32,
    /// Status to answer, if any.
    pub status: Option<u16>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u32>,
    /// Delay before answering.
    pub delay_ms: u64,
    /// Only this method.
    pub method: Option<String>,
    /// Only paths ending with this.
    pub path_suffix: Option<String>,
    /// Only bodies containing this.
    pub body_contains: Option<String>,
    /// The call is performed and its answer replaced.
    pub lose_answer: bool,
    /// Error message.
    pub message: Option<String>,
    /// More headers.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl FaultRequest {
    /// Checks the request and arms it.
    pub fn validate(self) -> Result<Fault, String> {
        if self.count == 0 {
            return Err("count must be at least 1".into());
        }
        if let Some(s) = self.status
            && StatusCode::from_u16(s).is_err()
        {
            return Err(format!("{s} is not an HTTP status"));
        }
        if self.status.is_none() && self.delay_ms == 0 {
            return Err("a fault needs a status, a delay_ms, or both".into());
        }
        if self.lose_answer && self.status.is_none() {
            return Err("lose_answer needs the status that replaces the answer".into());
        }
        if self.headers.iter().any(|(k, v)| {
            axum::http::HeaderName::try_from(k.as_str()).is_err()
                || HeaderValue::from_str(v).is_err()
        }) {
            return Err("headers must be valid HTTP header names and values".into());
        }
        if self.delay_ms > 120_000 {
            return Err("delay_ms is at most 120000".into());
        }
        Ok(Fault {
            service: self.service,
            remaining: self.count,
            status: self.status,
            retry_after: self.retry_after,
            delay_ms: self.delay_ms,
            method: self.method.map(|m| m.to_ascii_uppercase()),
            path_suffix: self.path_suffix,
            body_contains: self.body_contains,
            lose_answer: self.lose_answer,
            message: self.message,
            headers: self.headers,
        })
    }
}

impl Fault {
    /// The answer this fault gives, or `None` when it only delays.
    pub fn response(&self) -> Option<Response> {
        let status = StatusCode::from_u16(self.status?).ok()?;
        let mut response = error(
            status,
            self.message
                .as_deref()
                .unwrap_or("fault injected by the sandbox"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        Some(response)
    }
}

impl SandboxState {
    /// Takes one use of the first armed fault matching the call, if any.
    pub(super) fn take_fault(
        &mut self,
        service: Service,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<Fault> {
        let path = path.split('?').next().unwrap_or_default();
        let body = String::from_utf8_lossy(body);
        let i = self.faults.iter().position(|f| {
            f.service == service
                && f.method.as_deref().is_none_or(|m| m == method)
                && f.path_suffix.as_deref().is_none_or(|p| path.ends_with(p))
                && f.body_contains.as_deref().is_none_or(|b| body.contains(b))
        })?;
        let fault = self.faults[i].clone();
        self.faults[i].remaining -= 1;
        if self.faults[i].remaining == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }
}
