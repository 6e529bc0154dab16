//! Injected faults: make a service's next N calls fail with a status, a `Retry-After`, or slowness.

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
        })
    }
}

impl Fault {
    /// The answer this fault gives, or `None` when it only delays.
    pub fn response(&self) -> Option<Response> {
        let status = StatusCode::from_u16(self.status?).ok()?;
        let mut response = error(status, "fault injected by the sandbox");
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
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
    ) -> Option<Fault> {
        let path = path.split('?').next().unwrap_or_default();
        let i = self.faults.iter().position(|f| {
            f.service == service
                && f.method.as_deref().is_none_or(|m| m == method)
                && f.path_suffix.as_deref().is_none_or(|p| path.ends_with(p))
        })?;
        let fault = self.faults[i].clone();
        self.faults[i].remaining -= 1;
        if self.faults[i].remaining == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }
}
