//! Sends the plain requests `bugbot_shared` builds, with `worker::Fetch`, and counts the calls.

use crate::log;
use bugbot_shared::http::{ApiError, HttpRequest, HttpResponse, Method};
use std::cell::RefCell;
use std::collections::BTreeMap;
use worker::{Fetch, Headers, Request, RequestInit};

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
    let result = send_inner(&request).await;
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

async fn send_inner(request: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let service = request.service;
    let network = |what: &str| ApiError::network(service, what.to_owned());
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers
            .set(name, value)
            .map_err(|_| ApiError::permanent(service, format!("invalid header {name}")))?;
    }
    let mut init = RequestInit::new();
    init.with_method(method(request.method))
        .with_headers(headers);
    if let Some(body) = &request.body {
        init.with_body(Some(body.clone().into()));
    }
    let req = Request::new_with_init(&request.url, &init).map_err(|_| {
        ApiError::permanent(service, "invalid request URL (check the base URL setting)")
    })?;
    let mut response = Fetch::Request(req)
        .send()
        .await
        .map_err(|_| network("the request failed before an answer arrived"))?;
    let retry_after = response.headers().get("retry-after").ok().flatten();
    let body = response
        .text()
        .await
        .map_err(|_| network("the answer could not be read"))?;
    Ok(HttpResponse {
        status: response.status_code(),
        retry_after,
        body,
    })
}

fn method(m: Method) -> worker::Method {
    match m {
        Method::Get => worker::Method::Get,
        Method::Post => worker::Method::Post,
        Method::Patch => worker::Method::Patch,
        Method::Put => worker::Method::Put,
        Method::Delete => worker::Method::Delete,
    }
}

/// Sends a request and parses its answer with `parse`.
pub async fn call<T>(
    request: HttpRequest,
    parse: impl FnOnce(&HttpResponse) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let response = send(request).await?;
    parse(&response)
}
