//! The gateway's configuration, read from the Worker's vars and secrets.
//! Every name is documented in the README's configuration table.

use crate::error::GatewayError;
use worker::Env;

/// KV namespace binding shared with the consumer.
pub const KV_BINDING: &str = "BUGBOT_KV";
/// Queue producer binding for job messages.
pub const QUEUE_BINDING: &str = "JOBS";

/// A configured string (var or secret). Missing configuration is our fault, not the sender's:
/// it is logged by name and answered as 503.
pub fn string(env: &Env, name: &str) -> Result<String, GatewayError> {
    match env.var(name) {
        Ok(v) => Ok(v.to_string()),
        Err(_) => Err(GatewayError::Unavailable(format!(
            "configuration {name} is not set"
        ))),
    }
}
