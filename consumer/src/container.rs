//! The executor as a Cloudflare Container (production transport), one per running job: the
//! Durable Object named after the job starts the container built from
//! `executor-container/Dockerfile` on first use with the internet off, forwards requests to the
//! executor's port, and stops the container a minute after the consumer has recorded the run's
//! result (or, if it never says so, once the longest wall time and a margin have passed: its alarm
//! is the container's sleep timeout), then clears its own storage. The container's only way out is
//! its plain HTTP, which the runtime hands to this Worker ([`egress`]): the git host and the model
//! API are reached with their credentials attached here, anything else is refused and counted for
//! the job's report (`bugbot_shared::egress`). The local stack runs the same under `wrangler dev`
//! when Docker is ready (`scripts/container-engine`), else reaches the executor process at
//! `EXECUTOR_URL`.

use crate::run::now_ms;
use bugbot_shared::egress::{self, Credential, Decision, Grant, Presented};
use bugbot_shared::executor::{ContainerAlarm, FixRequest, container_alarm};
use worker::js_sys::{Array, Function, Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    Container, DurableObject, Env, Headers, Method, Request, RequestInit, Response, Result, State,
    durable_object,
};

/// The port `EXPOSE`d by the executor image.
const EXECUTOR_PORT: u16 = 8080;

/// How long a started container may take to accept on its port.
const READY_WITHIN_MS: u64 = 30_000;

/// The container is stopped this long after the last request to it: a run's longest wall time
/// (`bugbot_shared::executor::MAX_WALL_TIME_SECS`) plus a margin for the push.
const STOP_AFTER: std::time::Duration =
    std::time::Duration::from_secs(bugbot_shared::executor::MAX_WALL_TIME_SECS + 300);

/// How long one run of the alarm keeps the object awake. An object with no request or event in
/// progress is evicted (after 10 s under `wrangler dev`, 70–140 s on Cloudflare), and its container
/// is stopped with it; the consumer reading the run's streamed answer does not count. So while the
/// container runs, an alarm is always in progress: it waits this long, then runs again at once.
const KEEP_AWAKE: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a keep-awake alarm looks for an earlier stop time.
const STOP_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The object's own routes (the consumer's; the container cannot reach them).
const REFUSED_PATH: &str = "/_bugbot/egress-refused";
/// The run's result is recorded: the container stops [`crate::config::after_run`] later.
const RUN_OVER_PATH: &str = "/_bugbot/run-over";
/// Where the tally of refused hosts is kept.
const REFUSED_KEY: &str = "egress_refused";
/// Where a stop for a run that had not started is kept (the run id follows).
const STOPPED_PREFIX: &str = "stopped:";
/// Where the running container's model key is kept.
const MODEL_KEY: &str = "model_key";
/// When the container is to be stopped (milliseconds since the epoch).
const STOP_AT_KEY: &str = "stop_at_ms";

/// Props of the consumer's entrypoint when the runtime hands it a request from a container.
#[derive(serde::Serialize, serde::Deserialize)]
struct EgressProps {
    egress: Grant,
}

/// One executor container.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct ExecutorContainer {
    state: State,
    env: Env,
}

impl ExecutorContainer {
    /// `POST` counts a refused host (the body); `GET` answers the tally (`[[host, count]]`).
    async fn refused(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let mut tally: Vec<(String, u32)> = storage.get(REFUSED_KEY).await?.unwrap_or_default();
        if req.method() == Method::Post {
            let host = req.text().await?;
            egress::tally(&mut tally, host.trim());
            storage.put(REFUSED_KEY, &tally).await?;
        }
        Response::from_json(&tally)
    }

    /// The consumer has recorded the run's result: a running container is stopped (and the
    /// object's storage cleared) [`crate::config::after_run`] from now rather than at the sleep
    /// timeout, an hour away. Without a running container nothing changes (a stop that came before
    /// its run stays until the sleep timeout, for a redelivered fix request).
    async fn run_over(&self) -> Result<Response> {
        if !self.state.container().is_some_and(|c| c.running()) {
            return Response::empty();
        }
        let after_run = crate::config::after_run(&self.env);
        let storage = self.state.storage();
        let stop_at = now_ms().saturating_add(ms(after_run));
        if storage
            .get::<u64>(STOP_AT_KEY)
            .await?
            .is_none_or(|at| at > stop_at)
        {
            storage.put(STOP_AT_KEY, stop_at).await?;
            // The alarm may be running (keeping the object awake): it reads the new stop time
            // within STOP_CHECK.
            storage.set_alarm(after_run).await?;
        }
        Response::empty()
    }
}

impl DurableObject for ExecutorContainer {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() == REFUSED_PATH {
            return self.refused(req).await;
        }
        if req.path() == RUN_OVER_PATH && req.method() == Method::Post {
            return self.run_over().await;
        }
        let container = self.state.container().ok_or_else(|| {
            worker::Error::RustError("no container is bound to this object".into())
        })?;
        let cold_start = !container.running();
        let storage = self.state.storage();
        // A stop for a run of a container that is not running: the run has not started. It is
        // remembered, so the fix request that would start it is answered "stopped" instead, and
        // no container is started just to be told.
        if cold_start
            && req.method() == Method::Post
            && let Some(run) = stop_path(&req.path())
        {
            let ask: serde_json::Value = req.json().await?;
            let reason = ask["reason"].as_str().unwrap_or("stopped").to_owned();
            storage
                .put(&format!("{STOPPED_PREFIX}{run}"), reason)
                .await?;
            // Kept until the sleep timeout, like a run's state, then cleared by the alarm.
            let stop_at = now_ms().saturating_add(stop_after_ms());
            if storage.get::<u64>(STOP_AT_KEY).await?.unwrap_or(0) < stop_at {
                storage.put(STOP_AT_KEY, stop_at).await?;
                storage.set_alarm(STOP_AFTER).await?;
            }
            return Response::from_json(
                &serde_json::json!({ "run_id": run, "state": "stopped_before_start" }),
            );
        }
        // The model key the executor presents, one per container start (the egress swaps it for
        // the real one).
        let model_key = match storage.get::<String>(MODEL_KEY).await? {
            Some(key) if !cold_start => key,
            _ => {
                let key = random_key()?;
                storage.put(MODEL_KEY, &key).await?;
                key
            }
        };
        // A fix: what the run may reach goes to the runtime, with the real token; the container
        // gets the repository's intercepted URL and a git password of the run's own.
        if req.method() == Method::Post && req.path() == "/v1/fix" {
            let job = self.state.id().name().unwrap_or_default();
            let mut fix: FixRequest = req.json().await?;
            if let Some(run) = &fix.run_id
                && let Some(reason) = storage
                    .get::<String>(&format!("{STOPPED_PREFIX}{run}"))
                    .await?
            {
                let line = bugbot_shared::executor::done_line(
                    bugbot_shared::executor::FixResult::stopped(&reason),
                );
                let mut answer = Response::ok(line)?;
                answer
                    .headers_mut()
                    .set("content-type", "application/x-ndjson")?;
                return Ok(answer);
            }
            let (mut grant, container_url) =
                Grant::for_clone_url(&job, &fix.repo_url, fix.github_token.take())
                    .map_err(|e| worker::Error::RustError(e.to_string()))?;
            grant.run_key = random_key()?;
            grant.model_key = model_key.clone();
            fix.repo_url = container_url;
            fix.github_token = Some(grant.run_key.clone());
            intercept(&self.state, &container, grant).await?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(req.headers().clone())
                .with_body(Some(serde_json::to_string(&fix)?.into()));
            req = Request::new_with_init(req.url()?.as_ref(), &init)?;
        }
        let started_ms = worker::Date::now().as_millis();
        if cold_start {
            let token = crate::config::var(&self.env, "EXECUTOR_TOKEN").ok_or_else(|| {
                worker::Error::RustError("EXECUTOR_TOKEN is not configured".into())
            })?;
            let model_url = format!("http://{}", egress::MODEL_HOST);
            // Neither the Anthropic key nor the installation token: stand-ins for both, which the
            // egress swaps for the real ones.
            let env = [
                ("EXECUTOR_TOKEN", token.as_str()),
                ("EXECUTOR_EGRESS_INTERCEPTED", "true"),
                ("ANTHROPIC_BASE_URL", model_url.as_str()),
                ("ANTHROPIC_API_KEY", model_key.as_str()),
            ];
            start(&container, &env)?;
        }
        // The sleep timeout, pushed back by every request; the alarm keeps the object awake until
        // then (it runs again when it ends, so setting it now only starts it if it is not running).
        let stop_at = now_ms().saturating_add(stop_after_ms());
        storage.put(STOP_AT_KEY, stop_at).await?;
        storage
            .set_alarm(std::time::Duration::from_millis(1))
            .await?;
        // Right after a start the port may not accept yet: retry, often at first (a start takes about
        // a second), for at most READY_WITHIN.
        let port = container.get_tcp_port(EXECUTOR_PORT)?;
        loop {
            let error = match port.fetch_request(req.clone()?).await {
                Ok(response) => {
                    if cold_start {
                        let ready_ms = worker::Date::now().as_millis() - started_ms;
                        crate::log::info(
                            "executor container ready",
                            &[("cold_start_ms", &ready_ms.to_string())],
                        );
                    }
                    return Ok(response);
                }
                Err(e) => e,
            };
            // Gone underneath (stopped by its alarm meanwhile, or crashed): this attempt fails
            // now, and the job's retry starts it again.
            if !container.running() {
                return Err(error);
            }
            let waited = worker::Date::now().as_millis() - started_ms;
            if waited > READY_WITHIN_MS {
                return Err(error);
            }
            let pause = if waited < 2_000 { 100 } else { 500 };
            worker::Delay::from(std::time::Duration::from_millis(pause)).await;
        }
    }

    /// Keeps the object awake while its container runs (see [`KEEP_AWAKE`]); at the sleep timeout
    /// (the job's run is over) stops the container and clears the object's storage.
    async fn alarm(&self) -> Result<Response> {
        let container = self.state.container().filter(Container::running);
        let storage = self.state.storage();
        let stop_at: Option<u64> = storage.get(STOP_AT_KEY).await?;
        match container_alarm(container.is_some(), now_ms(), stop_at, KEEP_AWAKE) {
            ContainerAlarm::KeepAwake(wait) => {
                // In slices: a new stop time (the run is over) is acted on within STOP_CHECK. The
                // runtime marks the container stopped only when a `monitor()` of it settles, so
                // one is watched throughout: a container that exits on its own (a crash, out of
                // memory) is then started again by the next request instead of being fetched
                // from for ever.
                let until = now_ms().saturating_add(ms(wait));
                let mut exited = std::pin::pin!(container_exit(container.as_ref()));
                loop {
                    let left = until.saturating_sub(now_ms());
                    if left == 0 {
                        break;
                    }
                    let slice =
                        worker::Delay::from(STOP_CHECK.min(std::time::Duration::from_millis(left)));
                    if let futures::future::Either::Right(_) =
                        futures::future::select(slice, exited.as_mut()).await
                    {
                        crate::log::info("executor container exited", &[]);
                        break;
                    }
                    if storage.get::<u64>(STOP_AT_KEY).await? != stop_at {
                        break;
                    }
                }
                storage
                    .set_alarm(std::time::Duration::from_millis(1))
                    .await?;
            }
            ContainerAlarm::WaitFor(wait) => storage.set_alarm(wait).await?,
            ContainerAlarm::Retire => {
                if let Some(container) = container {
                    container.destroy(None).await?;
                    // Until a monitor settles the runtime counts it as running, and the next
                    // request (a retry of the job) would not start it again.
                    container_exit(Some(&container)).await;
                }
                // A request while the container stopped pushed the stop time back: its run keeps
                // what it stored (and its alarm runs again).
                if storage.get::<u64>(STOP_AT_KEY).await? == stop_at {
                    storage.delete_all().await?;
                }
            }
        }
        Response::empty()
    }
}

/// Settles once `container` has exited (at once when there is none). Its exit status does not
/// matter here: a destroyed or crashed container is equally gone.
async fn container_exit(container: Option<&Container>) {
    if let Some(container) = container {
        let _ = container.wait_for_exit().await;
    }
}

fn stop_after_ms() -> u64 {
    ms(STOP_AFTER)
}

fn ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The run id of an executor stop path (`/v1/runs/{id}/stop`).
fn stop_path(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/runs/")?
        .strip_suffix("/stop")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Starts `container` with these environment variables and the internet off. workers-rs 0.8.7's
/// `ContainerStartupOptions` hands workerd a class instance whose `env` is a `Map`, and removes the
/// fields that are set, so the container would start without its settings: the options object is
/// built here as workerd reads it (`{ env: { NAME: "value" }, enableInternet }`).
fn start(container: &Container, env: &[(&str, &str)]) -> Result<()> {
    let vars = Object::new();
    for (name, value) in env {
        Reflect::set(&vars, &JsValue::from_str(name), &JsValue::from_str(value))?;
    }
    let options = Object::new();
    Reflect::set(&options, &JsValue::from_str("env"), &vars)?;
    Reflect::set(
        &options,
        &JsValue::from_str("enableInternet"),
        &JsValue::FALSE,
    )?;
    let raw: &JsValue = container.as_ref();
    let start: Function = Reflect::get(raw, &JsValue::from_str("start"))?.dyn_into()?;
    start.call1(raw, &options)?;
    Ok(())
}

/// Hands the container's plain HTTP (port 80, any address) to this Worker's own entrypoint with
/// `grant` as its props (`ctx.exports.default({ props })`): [`egress`] then serves it. Called for
/// every fix, so a later attempt's fresh token replaces the earlier one.
async fn intercept(state: &State, container: &Container, grant: Grant) -> Result<()> {
    let exports = Reflect::get(state.as_raw(), &JsValue::from_str("exports"))?;
    let entrypoint: Function =
        Reflect::get(&exports, &JsValue::from_str("default"))?.unchecked_into();
    let options = Object::new();
    let props = serde_wasm_bindgen::to_value(&EgressProps { egress: grant })?;
    Reflect::set(&options, &JsValue::from_str("props"), &props)?;
    // Called as a function, not through `.call` (a stub answers any property as an RPC method).
    let fetcher = Reflect::apply(&entrypoint, &JsValue::UNDEFINED, &Array::of1(&options))?;
    let raw: &JsValue = container.as_ref();
    let method: Function =
        Reflect::get(raw, &JsValue::from_str("interceptAllOutboundHttp"))?.dyn_into()?;
    let promise: Promise = method.call1(raw, &fetcher)?.dyn_into()?;
    worker::wasm_bindgen_futures::JsFuture::from(promise).await?;
    Ok(())
}

/// 244 random bits, as text (two `crypto.randomUUID()`s).
fn random_key() -> Result<String> {
    let crypto = Reflect::get(&worker::js_sys::global(), &JsValue::from_str("crypto"))?;
    let uuid: Function = Reflect::get(&crypto, &JsValue::from_str("randomUUID"))?.dyn_into()?;
    let mut key = String::from("bugbot-");
    for _ in 0..2 {
        key.push_str(
            &uuid
                .call0(&crypto)?
                .as_string()
                .unwrap_or_default()
                .replace('-', ""),
        );
    }
    Ok(key)
}

/// Whether `ctx` is the runtime handing over a container's request; its grant if so.
pub fn egress_grant(ctx: &worker::Context) -> Option<Grant> {
    ctx.props::<EgressProps>().ok().map(|p| p.egress)
}

/// Serves one request a container made: forwards it with the credential attached when `grant`
/// allows it, else answers 403 with the reason and counts the host on the job.
pub async fn egress(req: Request, env: &Env, grant: Grant) -> Result<Response> {
    let model_upstream = crate::config::var(env, "ANTHROPIC_BASE_URL")
        .unwrap_or_else(|| "https://api.anthropic.com".into());
    let method = req.method();
    let url = req.url()?.to_string();
    let authorization = req.headers().get("authorization")?;
    let api_key = req.headers().get("x-api-key")?;
    let presented = Presented {
        authorization: authorization.as_deref(),
        api_key: api_key.as_deref(),
    };
    let decision = egress::decide(&grant, &model_upstream, method.as_ref(), &url, presented);
    let (url, credential) = match decision {
        Decision::Forward { url, credential } => (url, credential),
        Decision::Challenge => {
            crate::log::info("egress challenge", &[("job", &grant.job)]);
            let headers = Headers::new();
            headers.set("www-authenticate", "Basic realm=\"bugbot\"")?;
            return Ok(
                Response::error("the run's git password is required", 401)?.with_headers(headers)
            );
        }
        Decision::Refuse { host, reason } => {
            crate::log::info(
                "egress refused",
                &[
                    ("job", &grant.job),
                    ("host", &host),
                    ("method", method.as_ref()),
                ],
            );
            if let Err(e) = count_refusal(env, &grant.job, &host).await {
                crate::log::error("egress refusal not counted", &[("error", &e.to_string())]);
            }
            return Response::error(reason, 403);
        }
    };
    let headers = Headers::new();
    for name in egress::FORWARDED_HEADERS {
        if let Some(value) = req.headers().get(name)? {
            headers.set(name, &value)?;
        }
    }
    match credential {
        Credential::ModelKey => {
            let key = crate::config::var(env, "ANTHROPIC_API_KEY").ok_or_else(|| {
                worker::Error::RustError("ANTHROPIC_API_KEY is not configured".into())
            })?;
            headers.set("x-api-key", &key)?;
        }
        Credential::GitToken => {
            if let Some(token) = &grant.git_token {
                headers.set("authorization", &egress::git_authorization(token))?;
            }
        }
    }
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers);
    if !matches!(method, Method::Get | Method::Head) {
        init.with_body(req.inner().body().map(JsValue::from));
    }
    let upstream = Request::new_with_init(&url, &init)?;
    let answer = worker::Fetch::Request(upstream).send().await?;
    crate::log::info(
        "egress",
        &[
            ("job", &grant.job),
            (
                "credential",
                if credential == Credential::ModelKey {
                    "model"
                } else {
                    "git"
                },
            ),
            ("method", method.as_ref()),
            ("status", &answer.status_code().to_string()),
        ],
    );
    Ok(answer)
}

/// Job `job`'s container object: one per running job, named after it, so concurrent jobs do not
/// share a machine (nor its agent users) and a redelivery of the job reaches the same one.
pub fn stub(env: &Env, job: &str) -> Result<worker::Stub> {
    env.durable_object("EXECUTOR")?
        .id_from_name(job)?
        .get_stub()
}

async fn count_refusal(env: &Env, job: &str, host: &str) -> Result<()> {
    let stub = stub(env, job)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(host)));
    let req = Request::new_with_init(&format!("http://executor{REFUSED_PATH}"), &init)?;
    stub.fetch_with_request(req).await?;
    Ok(())
}

/// The hosts job `job`'s container was refused, with counts.
pub async fn refused_hosts(env: &Env, job: &str) -> Result<Vec<(String, u32)>> {
    let mut answer = stub(env, job)?
        .fetch_with_str(&format!("http://executor{REFUSED_PATH}"))
        .await?;
    answer.json().await
}

/// Says job `job`'s run is over and its result recorded: its container stops soon.
pub async fn run_over(env: &Env, job: &str) -> Result<()> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let req = Request::new_with_init(&format!("http://executor{RUN_OVER_PATH}"), &init)?;
    stub(env, job)?.fetch_with_request(req).await?;
    Ok(())
}
