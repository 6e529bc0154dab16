//! Sends the plain requests `bugbot_shared` builds (through `bugbot_edge`), logs and counts the calls.

use crate::log;
use bugbot_shared::http::{ApiError, HttpRequest, HttpResponse};
use std::cell::RefCell;
use std::collections::BTreeMap;

thread_local! {
    /// Calls made by the job being run, per service (the consumer runs one job at a time).
    static CALLS: RefCell<BTreeMap<&'static str, u32>> = const { RefCell::new(BTreeMap::new()) };
}

/// Forgets the counts (at the start of a job).
pub fn reset_counts() {
    CALLS.with_borrow_mut(BTreeMap::clear);
}

/// Calls per service since [`reset_counts`], as `discord=2 linear=5`.
pub fn counts() -> String {
    CALLS.with_borrow(|c| {
        c.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Sends one request. A call that gets no answer is a transient error; any status is returned
/// for the caller's parser to classify.
pub async fn send(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let service = request.service;
    CALLS.with_borrow_mut(|c| *c.entry(service.as_str()).or_default() += 1);
    let started = worker::Date::now().as_millis();
    let result = bugbot_edge::send(&request).await;
    let took = worker::Date::now().as_millis().saturating_sub(started);
    let status = match &result {
        Ok(r) => r.status.to_string(),
        Err(_) => "no answer".to_owned(),
    };
    log::info(
        "call",
        &[
            ("service", service.as_str()),
            ("request", &request.describe()),
            ("status", &status),
            ("ms", &took.to_string()),
        ],
    );
    result
}

/// Sends a request and parses its answer with `parse`.
pub async fn call<T>(
    request: HttpRequest,
    parse: impl FnOnce(&HttpResponse) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let response = send(request).await?;
    parse(&response)
}
