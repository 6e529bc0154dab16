//! The one adapter between `bugbot_shared`'s plain requests and the Workers runtime: both Workers
//! (the gateway's Discord Gateway connection, the consumer's API calls) send through it. It also
//! holds what both Workers do alike: structured logs and the panic hook.

use bugbot_shared::http::{ApiError, HttpRequest, HttpResponse, Method};
use worker::{Fetch, Headers, Request, RequestInit};

/// Sends one request with `worker::Fetch`. A call that gets no answer is a transient error; any
/// status is returned for the caller's parser to classify.
pub async fn send(request: &HttpRequest) -> Result<HttpResponse, ApiError> {
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
    let header = |name: &str| response.headers().get(name).ok().flatten();
    let retry_after = header("retry-after");
    let ratelimit_remaining = header("x-ratelimit-remaining");
    let ratelimit_reset = header("x-ratelimit-reset");
    let body = response
        .text()
        .await
        .map_err(|_| network("the answer could not be read"))?;
    Ok(HttpResponse {
        status: response.status_code(),
        retry_after,
        body,
        ratelimit_remaining,
        ratelimit_reset,
        received_at_secs: worker::Date::now().as_millis() / 1000,
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

/// Structured log lines (see `bugbot_shared::log`) on the Workers' console, for one component.
#[derive(Debug, Clone, Copy)]
pub struct Log(pub &'static str);

impl Log {
    /// Something worth knowing happened.
    pub fn info(self, msg: &str, fields: &[(&str, &str)]) {
        worker::console_log!("{}", bugbot_shared::log::line(self.0, "info", msg, fields));
    }

    /// Our side failed.
    pub fn error(self, msg: &str, fields: &[(&str, &str)]) {
        worker::console_error!("{}", bugbot_shared::log::line(self.0, "error", msg, fields));
    }
}

/// Installs the panic hook: a panic's message and location become one structured log line
/// (`"msg":"panic"`), then `console_error_panic_hook` logs it with the JavaScript stack. Without a
/// hook a panic in wasm logs only "unreachable executed". Call it from the Worker's start event;
/// calling it again (the runtime re-creates the instance after a panic) is harmless.
pub fn install_panic_hook(component: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        Log(component).error("panic", &[("panic", &info.to_string())]);
        console_error_panic_hook::hook(info);
    }));
}
