//! Structured logs of the consumer (see `bugbot_edge::Log`).

const LOG: bugbot_edge::Log = bugbot_edge::Log("consumer");

/// Something worth knowing happened.
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    LOG.info(msg, fields);
}

/// Our side failed.
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    LOG.error(msg, fields);
}
