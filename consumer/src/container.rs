//! The executor as a Cloudflare Container (production transport). The Durable Object starts the
//! container built from `executor-container/Dockerfile` on first use, handing it its secrets, and
//! forwards requests to the executor's port. Locally the consumer reaches the executor binary at
//! `EXECUTOR_URL` instead (`wrangler dev` runs with containers disabled).

use worker::{
    ContainerStartupOptions, DurableObject, Env, Request, Response, Result, State, durable_object,
};

/// The port `EXPOSE`d by the executor image.
const EXECUTOR_PORT: u16 = 8080;
/// Secrets the container receives as environment variables.
const CONTAINER_SECRETS: &[&str] = &["EXECUTOR_TOKEN", "ANTHROPIC_API_KEY"];

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
}
