//! The executor as a Cloudflare Container (production transport), one per running job: the
//! Durable Object named after the job starts the container built from
//! `executor-container/Dockerfile` on first use, handing it its secrets, forwards requests to the
//! executor's port, and stops the container once the run's wall time (and a margin) has passed —
//! its alarm is the container's sleep timeout. The local stack runs the same under `wrangler dev`
//! when Docker is ready (`scripts/container-engine`), else reaches the executor process at
//! `EXECUTOR_URL`.

use worker::js_sys::{Function, Object, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Container, DurableObject, Env, Request, Response, Result, State, durable_object};

/// The port `EXPOSE`d by the executor image.
const EXECUTOR_PORT: u16 = 8080;
/// Secrets the container receives as environment variables.
const CONTAINER_SECRETS: &[&str] = &["EXECUTOR_TOKEN", "ANTHROPIC_API_KEY"];
/// Settings the container receives when the consumer has them: only local development sets them
/// (the sandbox's model API, `http://` git remotes).
const CONTAINER_VARS: &[&str] = &["ANTHROPIC_BASE_URL", "EXECUTOR_DEV_MODE"];

/// How long a started container may take to accept on its port.
const READY_WITHIN_MS: u64 = 30_000;

/// The container is stopped this long after the last request to it: a run's longest wall time
/// (`bugbot_shared::executor::MAX_WALL_TIME_SECS`) plus a margin for the push.
const STOP_AFTER: std::time::Duration =
    std::time::Duration::from_secs(bugbot_shared::executor::MAX_WALL_TIME_SECS + 300);

/// One executor container.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct ExecutorContainer {
    state: State,
    env: Env,
}

impl DurableObject for ExecutorContainer {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let container = self.state.container().ok_or_else(|| {
            worker::Error::RustError("no container is bound to this object".into())
        })?;
        let cold_start = !container.running();
        let started_ms = worker::Date::now().as_millis();
        if cold_start {
            let mut env = Vec::new();
            for name in CONTAINER_SECRETS {
                let value = crate::config::var(&self.env, name)
                    .ok_or_else(|| worker::Error::RustError(format!("{name} is not configured")))?;
                env.push((*name, value));
            }
            for name in CONTAINER_VARS {
                if let Some(value) = crate::config::var(&self.env, name) {
                    env.push((*name, value));
                }
            }
            // The executor needs GitHub and Anthropic; everything else it reaches is refused by git's
            // and Claude Code's own configuration.
            start(&container, &env, true)?;
        }
        // The sleep timeout: pushed back by every request.
        self.state.storage().set_alarm(STOP_AFTER).await?;
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
            let waited = worker::Date::now().as_millis() - started_ms;
            if waited > READY_WITHIN_MS {
                return Err(error);
            }
            let pause = if waited < 2_000 { 100 } else { 500 };
            worker::Delay::from(std::time::Duration::from_millis(pause)).await;
        }
    }

    /// The sleep timeout: the job's run is over, stop its container.
    async fn alarm(&self) -> Result<Response> {
        if let Some(container) = self.state.container()
            && container.running()
        {
            container.destroy(None).await?;
        }
        Response::empty()
    }
}

/// Starts `container` with these environment variables and internet access. workers-rs 0.8.7's
/// `ContainerStartupOptions` hands workerd a class instance whose `env` is a `Map`, and removes the
/// fields that are set, so the container would start without its secrets: the options object is
/// built here as workerd reads it (`{ env: { NAME: "value" }, enableInternet }`).
fn start(container: &Container, env: &[(&str, String)], internet: bool) -> Result<()> {
    let vars = Object::new();
    for (name, value) in env {
        Reflect::set(&vars, &JsValue::from_str(name), &JsValue::from_str(value))?;
    }
    let options = Object::new();
    Reflect::set(&options, &JsValue::from_str("env"), &vars)?;
    Reflect::set(
        &options,
        &JsValue::from_str("enableInternet"),
        &JsValue::from_bool(internet),
    )?;
    let raw: &JsValue = container.as_ref();
    let start: Function = Reflect::get(raw, &JsValue::from_str("start"))?.dyn_into()?;
    start.call1(raw, &options)?;
    Ok(())
}
