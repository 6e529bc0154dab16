//! Structured logs of the gateway (see `bugbot_edge::Log`).

const LOG: bugbot_edge::Log = bugbot_edge::Log("gateway");

/// Something worth knowing happened.
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    LOG.info(msg, fields);
}

/// Our side failed.
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    LOG.error(msg, fields);
}
