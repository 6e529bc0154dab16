//! Structured logs of the consumer (see `bugbot_shared::log`).

/// Something worth knowing happened.
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    worker::console_log!(
        "{}",
        bugbot_shared::log::line("consumer", "info", msg, fields)
    );
}

/// Our side failed.
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    worker::console_error!(
        "{}",
        bugbot_shared::log::line("consumer", "error", msg, fields)
    );
}
