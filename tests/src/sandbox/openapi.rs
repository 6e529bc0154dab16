//! Checks requests against a service's published OpenAPI document (`crate::localenv::Spec`): the path
//! and method must exist, query parameters must be declared (and integers in range), and a JSON body
//! must validate against the operation's request schema.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One OpenAPI document, with compiled request-body validators cached per operation.
pub struct OpenApi {
    name: &'static str,
    doc: Value,
    templates: Vec<(String, Vec<String>)>,
    validators: Mutex<HashMap<(String, String), Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenApi({})", self.name)
    }
}

/// The operation a request matched.
#[derive(Debug, Clone)]
pub struct Matched {
    /// The path template (`/channels/{channel_id}/messages`).
    pub template: String,
    /// Values of the template's parameters.
    pub params: HashMap<String, String>,
}

impl OpenApi {
    /// Loads a published document.
    pub fn load(name: &'static str, spec: crate::localenv::Spec) -> anyhow::Result<Self> {
        let text = spec.read()?;
        let doc: Value = serde_json::from_str(&text)?;
        let templates = doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|k| (k.clone(), split(k)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok(Self {
            name,
            doc,
            templates,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a request. `path` is the API path (without the server's base path), `query` the raw
    /// query string. Returns the matched operation or why the real service would refuse it.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Matched, String> {
        let segments = split(path);
        // The most specific template wins (`@original` over `{message_id}`).
        let mut best: Option<(usize, &String, HashMap<String, String>)> = None;
        for (template, parts) in &self.templates {
            // A trailing `{path}` (GitHub's file paths) takes the rest of the path, slashes and all.
            let rest_param = parts.last().is_some_and(|p| p == "{path}");
            let segments: Vec<String> = if rest_param && segments.len() > parts.len() {
                let (head, tail) = segments.split_at(parts.len() - 1);
                head.iter().cloned().chain([tail.join("/")]).collect()
            } else {
                segments.clone()
            };
            if parts.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let mut params = HashMap::new();
            let fits = parts.iter().zip(&segments).all(|(p, s)| {
                if p.starts_with('{') && p.ends_with('}') {
                    params.insert(p[1..p.len() - 1].to_owned(), s.clone());
                    !s.is_empty()
                } else {
                    literals += 1;
                    p == s
                }
            });
            if fits && best.as_ref().is_none_or(|(n, _, _)| literals > *n) {
                best = Some((literals, template, params));
            }
        }
        let Some((_, template, params)) = best else {
            return Err(format!("{} has no path {path}", self.name));
        };
        let item = &self.doc["paths"][template];
        let op = &item[method.to_ascii_lowercase()];
        if !op.is_object() {
            return Err(format!("{} has no {method} {template}", self.name));
        }
        self.check_query(item, op, query)?;
        self.check_body(method, template, op, body)?;
        Ok(Matched {
            template: template.clone(),
            params,
        })
    }

    fn parameters<'a>(&'a self, item: &'a Value, op: &'a Value) -> Vec<&'a Value> {
        item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(|p| self.resolve(p))
            .collect()
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/")
                .map_or(v, |p| p.split('/').fold(&self.doc, |d, k| &d[k])),
            None => v,
        }
    }

    fn check_query(&self, item: &Value, op: &Value, query: Option<&str>) -> Result<(), String> {
        let params = self.parameters(item, op);
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(p) = params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == name)
            else {
                return Err(format!("{}: unknown query parameter {name}", self.name));
            };
            let schema = self.resolve(&p["schema"]);
            if schema["type"] == "integer" {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("{}: {name} must be an integer", self.name))?;
                if schema["minimum"].as_i64().is_some_and(|m| n < m)
                    || schema["maximum"].as_i64().is_some_and(|m| n > m)
                {
                    return Err(format!("{}: {name}={n} is out of range", self.name));
                }
            }
        }
        Ok(())
    }

    fn check_body(
        &self,
        method: &str,
        template: &str,
        op: &Value,
        body: Option<&Value>,
    ) -> Result<(), String> {
        let request_body = self.resolve(&op["requestBody"]);
        let schema = &request_body["content"]["application/json"]["schema"];
        let Some(body) = body else {
            if request_body["required"] == true {
                return Err(format!(
                    "{}: {method} {template} needs a JSON body",
                    self.name
                ));
            }
            return Ok(());
        };
        if !schema.is_object() {
            return Err(format!(
                "{}: {method} {template} takes no JSON body",
                self.name
            ));
        }
        let key = (method.to_owned(), template.to_owned());
        let validator = {
            let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let mut root = schema.clone();
                    if let Some(obj) = root.as_object_mut() {
                        obj.insert("components".into(), self.doc["components"].clone());
                    }
                    let v = Arc::new(
                        jsonschema::validator_for(&root)
                            .map_err(|e| format!("{}: schema of {template}: {e}", self.name))?,
                    );
                    cache.insert(key, v.clone());
                    v
                }
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(body)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}: invalid body for {method} {template}: {}",
                self.name,
                errors.join("; ")
            ))
        }
    }
}

/// Why a stand-in refuses a request before its own logic runs.
#[derive(Debug)]
pub enum Refusal {
    /// The body is not JSON.
    NotJson,
    /// The real service would refuse it (recorded in the sandbox's violations).
    Violation(String),
    /// The spec could not be loaded.
    NoSpec(String),
}

/// Reads a stand-in request: the JSON body (if any), checked with the path and method against the
/// service's spec. A violation is recorded in the sandbox's state.
pub fn admit(
    sb: &super::Sandbox,
    spec: Result<&OpenApi, String>,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<(Matched, Option<Value>), Refusal> {
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(body).map_err(|_| Refusal::NotJson)?)
    };
    let spec = spec.map_err(Refusal::NoSpec)?;
    match spec.check(method, path, query, body.as_ref()) {
        Ok(m) => Ok((m, body)),
        Err(why) => {
            sb.lock().violations.push(why.clone());
            Err(Refusal::Violation(why))
        }
    }
}

/// A query parameter's raw value.
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn split(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discord_requests_are_checked_against_the_spec() {
        let spec = OpenApi::load("Discord", crate::localenv::Spec::DiscordOpenApi).unwrap();
        let m = spec
            .check(
                "PATCH",
                "/webhooks/1/tok/messages/@original",
                None,
                Some(&json!({"content": "hi", "allowed_mentions": {"parse": []}})),
            )
            .unwrap();
        assert_eq!(
            m.template,
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
        );
        assert!(
            spec.check(
                "PATCH",
                "/webhooks/1/tok/messages/@original",
                None,
                Some(&json!({"content": 5}))
            )
            .is_err()
        );
        assert!(
            spec.check("GET", "/channels/1/messages", Some("limit=50"), None)
                .is_ok()
        );
        assert!(
            spec.check("GET", "/channels/1/messages", Some("limit=500"), None)
                .is_err()
        );
        assert!(
            spec.check("GET", "/channels/1/messages", Some("lim=5"), None)
                .is_err()
        );
        assert!(
            spec.check("PUT", "/channels/1/messages", None, None)
                .is_err()
        );
        assert!(spec.check("GET", "/nope", None, None).is_err());
    }

    #[test]
    fn github_requests_are_checked_against_the_spec() {
        let spec = OpenApi::load("GitHub", crate::localenv::Spec::GitHubOpenApi).unwrap();
        assert!(
            spec.check(
                "POST",
                "/repos/a/b/issues/1/comments",
                None,
                Some(&json!({"body": "x"}))
            )
            .is_ok()
        );
        assert!(
            spec.check(
                "POST",
                "/repos/a/b/issues/1/comments",
                None,
                Some(&json!({"text": "x"}))
            )
            .is_err()
        );
        assert!(
            spec.check(
                "GET",
                "/repos/a/b/issues/1/comments",
                Some("per_page=50"),
                None
            )
            .is_ok()
        );
    }
}
