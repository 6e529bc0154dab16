//! Structured logs of the gateway (see `bugbot_shared::log`).

/// Something worth knowing happened.
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    worker::console_log!(
        "{}",
        bugbot_shared::log::line("gateway", "info", msg, fields)
    );
}

/// Our side failed.
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    worker::console_error!(
        "{}",
        bugbot_shared::log::line("gateway", "error", msg, fields)
    );
}
