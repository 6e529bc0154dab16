//! Structured log lines: one JSON object a line, as `wrangler tail` and Workers Logs show them.
//! Callers pass only secret-free fields (ids, counts, outcomes), never tokens or bodies.

/// Builds one log line.
pub fn line(component: &str, level: &str, msg: &str, fields: &[(&str, &str)]) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("level".into(), level.into());
    obj.insert("component".into(), component.into());
    obj.insert("msg".into(), msg.into());
    for (k, v) in fields {
        obj.insert((*k).into(), (*v).into());
    }
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_one_json_line() {
        let l = super::line(
            "gateway",
            "info",
            "job \"queued\"\nnext",
            &[("job", "dc-1")],
        );
        assert!(!l.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["job"], "dc-1");
        assert_eq!(v["component"], "gateway");
    }
}
