//! Linear's GraphQL API stand-in (`/linear/graphql`).
//!
//! Strict: every operation is validated against `linear-schema.graphql` (apollo-compiler), and its
//! variables are coerced against the operation's declared types (so an unknown input field is
//! refused as Linear refuses it). The answer is the stand-in's data projected onto the operation's
//! selection set, so it has exactly the shape the real API would give.

use super::Sandbox;
use apollo_compiler::executable::{Selection, SelectionSet};
use apollo_compiler::request::coerce_variable_values;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// What the Linear stand-in holds.
#[derive(Debug, Serialize)]
pub struct LinearState {
    /// Teams.
    pub teams: Vec<Team>,
    /// Issues, in creation order.
    pub issues: Vec<Issue>,
    /// Attachments (URLs linked to issues).
    pub attachments: Vec<Attachment>,
    /// Comments.
    pub comments: Vec<Comment>,
}

impl Default for LinearState {
    fn default() -> Self {
        // A team, so a fresh local stack can create issues (LINEAR_TEAM_KEY=BUG in dev/local.env).
        Self {
            teams: vec![Team {
                id: "5c7a1c3e-0000-4000-8000-00000000b0b0".into(),
                key: "BUG".into(),
                name: "Bugs".into(),
            }],
            issues: Vec::new(),
            attachments: Vec::new(),
            comments: Vec::new(),
        }
    }
}

/// A team.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Team {
    /// UUID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
}

/// An issue.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    /// UUID.
    pub id: String,
    /// `BUG-1`.
    pub identifier: String,
    /// Title.
    pub title: String,
    /// Markdown description.
    pub description: String,
    /// Team id.
    pub team_id: String,
}

/// An attachment.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// UUID.
    pub id: String,
    /// Issue id.
    pub issue_id: String,
    /// Linked URL.
    pub url: String,
    /// Title.
    pub title: String,
}

/// A comment.
#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    /// UUID.
    pub id: String,
    /// Issue id.
    pub issue_id: String,
    /// Markdown body.
    pub body: String,
}

const WEB: &str = "https://linear.app/acme";

fn schema() -> Result<&'static Valid<Schema>, String> {
    static SCHEMA: OnceLock<Result<Valid<Schema>, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let sdl = crate::localenv::Spec::LinearSchema
                .read()
                .map_err(|e| format!("{e:#}"))?;
            Schema::parse_and_validate(sdl, "linear-schema.graphql").map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Validates an operation against Linear's schema (used by the stand-in and by tests of the
/// operations bugbot sends).
pub fn validate(query: &str) -> Result<Valid<ExecutableDocument>, String> {
    let schema = schema()?;
    ExecutableDocument::parse_and_validate(schema, query, "operation.graphql")
        .map_err(|e| e.errors.to_string())
}

#[derive(Debug, Deserialize)]
struct GraphQlRequest {
    query: String,
    #[serde(default)]
    variables: Option<Map<String, Value>>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

fn gql_error(status: StatusCode, message: &str, code: &str) -> Response {
    (
        status,
        Json(json!({ "errors": [{ "message": message, "extensions": { "code": code, "type": code.to_lowercase(), "userPresentableMessage": message } }] })),
    )
        .into_response()
}

/// `POST /linear/graphql`.
pub async fn graphql(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == sb.credentials.linear_api_key);
    if !key_ok {
        return gql_error(
            StatusCode::BAD_REQUEST,
            "Authentication required, not authenticated",
            "AUTHENTICATION_ERROR",
        );
    }
    // Linear's GraphQL server (Apollo) blocks POSTs without a JSON content type as possible
    // cross-site request forgery.
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        let why = "This operation has been blocked as a potential Cross-Site Request Forgery (CSRF): \
                   send Content-Type: application/json";
        sb.lock().violations.push(format!("Linear: {why}"));
        return gql_error(StatusCode::BAD_REQUEST, why, "BAD_REQUEST");
    }
    let request: GraphQlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return gql_error(
                StatusCode::BAD_REQUEST,
                &format!("invalid GraphQL request: {e}"),
                "GRAPHQL_PARSE_FAILED",
            );
        }
    };
    let doc = match validate(&request.query) {
        Ok(d) => d,
        Err(why) => {
            sb.lock().violations.push(format!("Linear: {why}"));
            return gql_error(StatusCode::BAD_REQUEST, &why, "GRAPHQL_VALIDATION_FAILED");
        }
    };
    let Ok(operation) = doc.operations.get(request.operation_name.as_deref()) else {
        return gql_error(
            StatusCode::BAD_REQUEST,
            "no single operation to run",
            "GRAPHQL_VALIDATION_FAILED",
        );
    };
    let variables = request.variables.unwrap_or_default();
    let vars_json = serde_json_bytes::Value::from(Value::Object(variables.clone()));
    let coerced = match vars_json.as_object() {
        Some(obj) => {
            coerce_variable_values(schema().unwrap_or_else(|_| unreachable!()), operation, obj)
        }
        None => {
            return gql_error(
                StatusCode::BAD_REQUEST,
                "variables must be an object",
                "INVALID_INPUT",
            );
        }
    };
    if let Err(e) = coerced {
        let why = format!("Linear: variables: {}", e.message());
        sb.lock().violations.push(why.clone());
        return gql_error(StatusCode::BAD_REQUEST, &why, "GRAPHQL_VALIDATION_FAILED");
    }

    let mut data = Map::new();
    for selection in &operation.selection_set.selections {
        let Selection::Field(field) = selection else {
            continue;
        };
        let args: Map<String, Value> = field
            .arguments
            .iter()
            .map(|a| (a.name.to_string(), argument_value(&a.value, &variables)))
            .collect();
        let resolved = resolve(&sb, field.name.as_str(), &args);
        match resolved {
            Ok(value) => {
                data.insert(
                    field.response_key().to_string(),
                    project(&value, &field.selection_set),
                );
            }
            Err((message, code)) => {
                return (
                    StatusCode::OK,
                    Json(json!({ "data": null, "errors": [{ "message": message, "path": [field.response_key().as_str()], "extensions": { "code": code, "type": "invalid input", "userPresentableMessage": message } }] })),
                )
                    .into_response();
            }
        }
    }
    Json(json!({ "data": data })).into_response()
}

/// An argument's value with variables substituted.
fn argument_value(value: &apollo_compiler::ast::Value, vars: &Map<String, Value>) -> Value {
    use apollo_compiler::ast::Value as V;
    match value {
        V::Variable(name) => vars.get(name.as_str()).cloned().unwrap_or(Value::Null),
        V::Null => Value::Null,
        V::String(s) => Value::String(s.clone()),
        V::Boolean(b) => Value::Bool(*b),
        V::Int(i) => i.try_to_i32().map_or(Value::Null, Value::from),
        V::Float(f) => f.try_to_f64().map_or(Value::Null, Value::from),
        V::Enum(e) => Value::String(e.to_string()),
        V::List(items) => Value::Array(items.iter().map(|i| argument_value(i, vars)).collect()),
        V::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), argument_value(v, vars)))
                .collect(),
        ),
    }
}

/// Keeps only the selected fields (with aliases), recursively.
fn project(value: &Value, selection: &SelectionSet) -> Value {
    if selection.selections.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|i| project(i, selection)).collect()),
        Value::Object(obj) => {
            let mut out = Map::new();
            project_into(obj, selection, &mut out);
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn project_into(obj: &Map<String, Value>, selection: &SelectionSet, out: &mut Map<String, Value>) {
    for s in &selection.selections {
        match s {
            Selection::Field(f) => {
                let v = if f.name == "__typename" {
                    obj.get("__typename").cloned().unwrap_or(Value::Null)
                } else {
                    obj.get(f.name.as_str()).cloned().unwrap_or(Value::Null)
                };
                out.insert(f.response_key().to_string(), project(&v, &f.selection_set));
            }
            Selection::InlineFragment(frag) => project_into(obj, &frag.selection_set, out),
            Selection::FragmentSpread(_) => {}
        }
    }
}

type Resolved = Result<Value, (String, &'static str)>;

fn not_found(what: &str) -> (String, &'static str) {
    (format!("Entity not found: {what}"), "ENTITY_NOT_FOUND")
}

fn resolve(sb: &Sandbox, field: &str, args: &Map<String, Value>) -> Resolved {
    let arg = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let input = args.get("input").cloned().unwrap_or(Value::Null);
    let inp = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut s = sb.lock();
    let l = &mut s.linear;
    match field {
        "issue" => {
            let id = arg("id");
            l.find_issue(&id)
                .map(|i| l.issue_json(i))
                .ok_or_else(|| not_found("Issue"))
        }
        "attachmentsForURL" => {
            let url = arg("url");
            let nodes: Vec<Value> = l
                .attachments
                .iter()
                .filter(|a| a.url == url)
                .map(|a| l.attachment_json(a))
                .collect();
            Ok(
                json!({ "nodes": nodes, "edges": [], "pageInfo": { "hasNextPage": false, "hasPreviousPage": false } }),
            )
        }
        "teams" => {
            let key = args
                .get("filter")
                .and_then(|f| f["key"]["eq"].as_str())
                .map(str::to_owned);
            let nodes: Vec<Value> = l
                .teams
                .iter()
                .filter(|t| key.as_ref().is_none_or(|k| &t.key == k))
                .map(|t| json!({ "id": t.id, "key": t.key, "name": t.name }))
                .collect();
            Ok(json!({ "nodes": nodes }))
        }
        "issueCreate" => {
            let Some(team) = inp("teamId")
                .and_then(|t| l.teams.iter().find(|x| x.id == t || x.key == t).cloned())
            else {
                return Err(not_found("Team"));
            };
            let id = inp("id").unwrap_or_else(|| uuid_like(l.issues.len() + 1, 0x1));
            if l.issues.iter().any(|i| i.id == id) {
                return Err((
                    format!("Entity already exists: Issue {id}"),
                    "INVALID_INPUT",
                ));
            }
            let number = l.issues.iter().filter(|i| i.team_id == team.id).count() + 1;
            let issue = Issue {
                id,
                identifier: format!("{}-{number}", team.key),
                title: inp("title").unwrap_or_default(),
                description: inp("description").unwrap_or_default(),
                team_id: team.id,
            };
            l.issues.push(issue.clone());
            Ok(
                json!({ "success": true, "lastSyncId": l.issues.len(), "issue": l.issue_json(&issue) }),
            )
        }
        "attachmentCreate" => {
            let issue_ref = inp("issueId").unwrap_or_default();
            let Some(issue) = l.find_issue(&issue_ref).cloned() else {
                return Err(not_found("Issue"));
            };
            let url = inp("url").unwrap_or_default();
            let title = inp("title").unwrap_or_default();
            // Linear updates the attachment when the URL is already linked to the issue.
            let attachment = if let Some(a) = l
                .attachments
                .iter_mut()
                .find(|a| a.issue_id == issue.id && a.url == url)
            {
                a.title = title;
                a.clone()
            } else {
                let a = Attachment {
                    id: inp("id").unwrap_or_else(|| uuid_like(l.attachments.len() + 1, 0xa)),
                    issue_id: issue.id.clone(),
                    url,
                    title,
                };
                l.attachments.push(a.clone());
                a
            };
            Ok(
                json!({ "success": true, "lastSyncId": 1, "attachment": l.attachment_json(&attachment) }),
            )
        }
        "commentCreate" => {
            let issue_ref = inp("issueId").unwrap_or_default();
            let Some(issue) = l.find_issue(&issue_ref).cloned() else {
                return Err(not_found("Issue"));
            };
            let id = inp("id").unwrap_or_else(|| uuid_like(l.comments.len() + 1, 0xc));
            if l.comments.iter().any(|c| c.id == id) {
                return Err((
                    format!("Entity already exists: Comment {id}"),
                    "INVALID_INPUT",
                ));
            }
            let comment = Comment {
                id,
                issue_id: issue.id.clone(),
                body: inp("body").unwrap_or_default(),
            };
            l.comments.push(comment.clone());
            Ok(json!({ "success": true, "lastSyncId": 1, "comment": l.comment_json(&comment) }))
        }
        "comment" => {
            let id = arg("id");
            l.comments
                .iter()
                .find(|c| c.id == id)
                .map(|c| l.comment_json(c))
                .ok_or_else(|| not_found("Comment"))
        }
        other => Err((
            format!("the Linear stand-in does not implement {other}"),
            "INVALID_INPUT",
        )),
    }
}

fn uuid_like(n: usize, kind: u8) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

impl LinearState {
    fn find_issue(&self, id_or_identifier: &str) -> Option<&Issue> {
        self.issues
            .iter()
            .find(|i| i.id == id_or_identifier || i.identifier == id_or_identifier)
    }

    fn team_json(&self, team_id: &str) -> Value {
        self.teams.iter().find(|t| t.id == team_id).map_or(
            Value::Null,
            |t| json!({ "id": t.id, "key": t.key, "name": t.name }),
        )
    }

    fn issue_json(&self, i: &Issue) -> Value {
        json!({
            "__typename": "Issue",
            "id": i.id,
            "identifier": i.identifier,
            "title": i.title,
            "description": i.description,
            "url": format!("{WEB}/issue/{}", i.identifier),
            "team": self.team_json(&i.team_id),
        })
    }

    fn attachment_json(&self, a: &Attachment) -> Value {
        json!({
            "id": a.id,
            "url": a.url,
            "title": a.title,
            "issue": self.issues.iter().find(|i| i.id == a.issue_id).map_or(Value::Null, |i| self.issue_json(i)),
        })
    }

    fn comment_json(&self, c: &Comment) -> Value {
        let identifier = self
            .issues
            .iter()
            .find(|i| i.id == c.issue_id)
            .map(|i| i.identifier.clone())
            .unwrap_or_default();
        json!({
            "id": c.id,
            "body": c.body,
            "url": format!("{WEB}/issue/{identifier}#comment-{}", &c.id[..8.min(c.id.len())]),
        })
    }
}

/// `POST /_sandbox/linear/seed`: `{ "teams": [..], "issues": [{ "team_key", "title" }] }`. Teams
/// given replace the default team (an empty list leaves Linear with no team).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Teams (replacing the current ones) when present.
    #[serde(default)]
    pub teams: Option<Vec<Team>>,
    /// Issues to create.
    #[serde(default)]
    pub issues: Vec<SeedIssue>,
}

/// An issue to seed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedIssue {
    /// Team key.
    pub team_key: String,
    /// Title.
    pub title: String,
}

/// Seeds teams and issues; answers the created issues.
pub async fn seed(State(sb): State<Sandbox>, Json(seed): Json<Seed>) -> Response {
    let mut s = sb.lock();
    let l = &mut s.linear;
    if let Some(teams) = seed.teams {
        l.teams = teams;
    }
    let mut created = Vec::new();
    for i in seed.issues {
        let Some(team) = l.teams.iter().find(|t| t.key == i.team_key).cloned() else {
            return super::error(StatusCode::BAD_REQUEST, &format!("no team {}", i.team_key));
        };
        let number = l.issues.iter().filter(|x| x.team_id == team.id).count() + 1;
        let issue = Issue {
            id: uuid_like(l.issues.len() + 1, 0x5),
            identifier: format!("{}-{number}", team.key),
            title: i.title,
            description: String::new(),
            team_id: team.id,
        };
        l.issues.push(issue.clone());
        created.push(l.issue_json(&issue));
    }
    Json(created).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_bugbot_sends_is_valid_against_linears_schema() {
        for op in bugbot_shared::linear::OPERATIONS {
            if let Err(e) = validate(op) {
                panic!("{op}\n{e}");
            }
        }
        // The check is real: a wrong field is refused.
        assert!(validate("query { issue(id: \"x\") { identifierr } }").is_err());
    }

    #[test]
    fn variables_are_coerced_against_the_declared_input_types() {
        let doc = validate(bugbot_shared::linear::ISSUE_CREATE_MUTATION).unwrap();
        let op = doc.operations.get(None).unwrap();
        let coerce = |v: Value| {
            let v = serde_json_bytes::Value::from(v);
            coerce_variable_values(schema().unwrap(), op, v.as_object().unwrap()).map(|_| ())
        };
        assert!(coerce(json!({"input": {"teamId": "t", "title": "x", "id": "u"}})).is_ok());
        assert!(
            coerce(json!({"input": {"title": "x"}})).is_err(),
            "teamId is required"
        );
        assert!(
            coerce(json!({"input": {"teamId": "t", "nope": 1}})).is_err(),
            "unknown field"
        );
    }
}
