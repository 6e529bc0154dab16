//! The executor as a Cloudflare Container (production transport), one per running job: the
//! Durable Object named after the job starts the container built from
//! `executor-container/Dockerfile` on first use, handing it its secrets, forwards requests to the
//! executor's port, and stops the container once the run's wall time (and a margin) has passed —
//! its alarm is the container's sleep timeout. Locally the consumer reaches the executor binary at
//! `EXECUTOR_URL` instead (`wrangler dev` runs with containers disabled).

use worker::{
    ContainerStartupOptions, DurableObject, Env, Request, Response, Result, State, durable_object,
};

/// The port `EXPOSE`d by the executor image.
const EXECUTOR_PORT: u16 = 8080;
/// Secrets the container receives as environment variables.
const CONTAINER_SECRETS: &[&str] = &["EXECUTOR_TOKEN", "ANTHROPIC_API_KEY"];

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
        if !container.running() {
            let mut options = ContainerStartupOptions::new();
            for name in CONTAINER_SECRETS {
                let value = self.env.secret(name)?.to_string();
                options.add_env(name, &value);
            }
            // The executor needs GitHub and Anthropic; everything else it reaches is refused by git's
            // and Claude Code's own configuration.
            options.enable_internet(true);
            container.start(Some(options))?;
        }
        // The sleep timeout: pushed back by every request.
        self.state.storage().set_alarm(STOP_AFTER).await?;
        // Right after a start the port may not accept yet: retry briefly.
        let port = container.get_tcp_port(EXECUTOR_PORT)?;
        let mut last_error = None;
        for attempt in 0..20u32 {
            match port.fetch_request(req.clone()?).await {
                Ok(response) => return Ok(response),
                Err(e) => {
                    last_error = Some(e);
                    worker::Delay::from(std::time::Duration::from_millis(
                        250 * u64::from(attempt.min(4) + 1),
                    ))
                    .await;
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| worker::Error::RustError("executor did not answer".into())))
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
