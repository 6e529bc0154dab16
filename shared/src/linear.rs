//! Linear's GraphQL API: the operations bugbot sends, request builders and response parsers.
//!
//! Every operation string is listed in [`OPERATIONS`]; a test in the `tests` crate validates each
//! one against `tests/specs/linear-schema.graphql`, and the sandbox's Linear stand-in validates
//! every request it receives against the same schema.

use crate::http::{ApiError, HttpRequest, HttpResponse, Method, Service};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Linear's API endpoint (the path below the configured base URL).
pub const GRAPHQL_PATH: &str = "/graphql";

/// Fetches an issue by UUID or identifier (`ENG-123`).
pub const ISSUE_QUERY: &str = "query BugbotIssue($id: String!) { issue(id: $id) { id identifier title url team { id key } } }";

/// Finds the issues a URL (a Discord thread, a GitHub issue) is attached to.
pub const ATTACHMENTS_FOR_URL_QUERY: &str = "query BugbotAttachmentsForUrl($url: String!) { attachmentsForURL(url: $url) { nodes { id url issue { id identifier title url team { id key } } } } }";

/// Finds a team by its key (`ENG`).
pub const TEAM_BY_KEY_QUERY: &str = "query BugbotTeamByKey($key: String!) { teams(filter: { key: { eq: $key } }) { nodes { id key name } } }";

/// Creates an issue (with a client-chosen id, so a repeat refers to the same issue).
pub const ISSUE_CREATE_MUTATION: &str = "mutation BugbotIssueCreate($input: IssueCreateInput!) { issueCreate(input: $input) { success issue { id identifier title url team { id key } } } }";

/// Links a URL to an issue. Linear updates the existing attachment when the URL is already linked.
pub const ATTACHMENT_CREATE_MUTATION: &str = "mutation BugbotAttachmentCreate($input: AttachmentCreateInput!) { attachmentCreate(input: $input) { success attachment { id url } } }";

/// Posts a comment (with a client-chosen id).
pub const COMMENT_CREATE_MUTATION: &str = "mutation BugbotCommentCreate($input: CommentCreateInput!) { commentCreate(input: $input) { success comment { id url } } }";

/// Fetches a comment by id (to confirm a create whose answer was lost).
pub const COMMENT_QUERY: &str = "query BugbotComment($id: String!) { comment(id: $id) { id url } }";

/// Every operation bugbot sends, for schema validation.
pub const OPERATIONS: &[&str] = &[
    ISSUE_QUERY,
    ATTACHMENTS_FOR_URL_QUERY,
    TEAM_BY_KEY_QUERY,
    ISSUE_CREATE_MUTATION,
    ATTACHMENT_CREATE_MUTATION,
    COMMENT_CREATE_MUTATION,
    COMMENT_QUERY,
];

/// Where and how to reach Linear.
#[derive(Debug, Clone)]
pub struct LinearApi {
    /// Base URL (`https://api.linear.app`, or the sandbox's).
    pub base_url: String,
    api_key: String,
}

impl LinearApi {
    /// A client for `base_url` with a personal API key (sent as Linear expects, without "Bearer").
    pub fn new(base_url: &str, api_key: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        }
    }

    fn request(&self, query: &str, variables: Value) -> HttpRequest {
        HttpRequest::new(
            Service::Linear,
            Method::Post,
            format!("{}{GRAPHQL_PATH}", self.base_url),
        )
        .header("authorization", self.api_key.clone())
        .json(&json!({ "query": query, "variables": variables }))
    }

    /// `issue(id:)`.
    pub fn issue(&self, id: &str) -> HttpRequest {
        self.request(ISSUE_QUERY, json!({ "id": id }))
    }

    /// `attachmentsForURL(url:)`.
    pub fn attachments_for_url(&self, url: &str) -> HttpRequest {
        self.request(ATTACHMENTS_FOR_URL_QUERY, json!({ "url": url }))
    }

    /// `teams(filter: {key: {eq:}})`.
    pub fn team_by_key(&self, key: &str) -> HttpRequest {
        self.request(TEAM_BY_KEY_QUERY, json!({ "key": key }))
    }

    /// `issueCreate` with a client-chosen id.
    pub fn issue_create(
        &self,
        id: &str,
        team_id: &str,
        title: &str,
        description: &str,
    ) -> HttpRequest {
        self.request(
            ISSUE_CREATE_MUTATION,
            json!({ "input": { "id": id, "teamId": team_id, "title": title, "description": description } }),
        )
    }

    /// `attachmentCreate`: links `url` to the issue.
    pub fn attachment_create(
        &self,
        id: &str,
        issue_id: &str,
        url: &str,
        title: &str,
    ) -> HttpRequest {
        self.request(
            ATTACHMENT_CREATE_MUTATION,
            json!({ "input": { "id": id, "issueId": issue_id, "url": url, "title": title } }),
        )
    }

    /// `commentCreate` with a client-chosen id.
    pub fn comment_create(&self, id: &str, issue_id: &str, body: &str) -> HttpRequest {
        self.request(
            COMMENT_CREATE_MUTATION,
            json!({ "input": { "id": id, "issueId": issue_id, "body": body } }),
        )
    }

    /// `comment(id:)`.
    pub fn comment(&self, id: &str) -> HttpRequest {
        self.request(COMMENT_QUERY, json!({ "id": id }))
    }
}

/// A Linear issue, as bugbot uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// UUID.
    pub id: String,
    /// Human identifier (`ENG-123`).
    pub identifier: String,
    /// Title.
    pub title: String,
    /// Web URL.
    pub url: String,
}

/// A posted comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// UUID.
    pub id: String,
    /// Web URL.
    pub url: String,
}

/// A team.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Team {
    /// UUID.
    pub id: String,
    /// Key (`ENG`).
    pub key: String,
    /// Name.
    pub name: String,
}

#[derive(Deserialize)]
struct GraphQlResponse<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

#[derive(Debug, Deserialize)]
struct GraphQlError {
    message: String,
    #[serde(default)]
    extensions: Value,
}

impl GraphQlError {
    fn code(&self) -> &str {
        self.extensions
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn is_not_found(&self) -> bool {
        self.message.starts_with("Entity not found") || self.code() == "ENTITY_NOT_FOUND"
    }
}

/// Outcome of one GraphQL call: data, "not found", or a classified failure.
enum Answer<T> {
    Data(T),
    NotFound,
}

fn answer<T: DeserializeOwned>(response: &HttpResponse) -> Result<Answer<T>, ApiError> {
    // Linear answers GraphQL errors with 200 or 400; rate limits as 400 with code RATELIMITED.
    let parsed: Option<GraphQlResponse<T>> = serde_json::from_str(&response.body).ok();
    let Some(parsed) = parsed else {
        return Err(if response.is_success() {
            ApiError::permanent(Service::Linear, "unexpected answer (not GraphQL)")
        } else {
            ApiError::from_status(Service::Linear, response)
        });
    };
    if let Some(error) = parsed.errors.first() {
        if error.code() == "RATELIMITED" {
            return Err(ApiError::Transient {
                service: Service::Linear,
                status: Some(response.status),
                retry_after_secs: response
                    .retry_after
                    .as_deref()
                    .and_then(crate::http::parse_retry_after),
                message: error.message.clone(),
            });
        }
        if error.is_not_found() {
            return Ok(Answer::NotFound);
        }
        if response.status >= 500 || error.code() == "INTERNAL_SERVER_ERROR" {
            return Err(ApiError::Transient {
                service: Service::Linear,
                status: Some(response.status),
                retry_after_secs: None,
                message: error.message.clone(),
            });
        }
        return Err(ApiError::Permanent {
            service: Service::Linear,
            status: Some(response.status),
            message: error.message.clone(),
        });
    }
    if !response.is_success() {
        return Err(ApiError::from_status(Service::Linear, response));
    }
    parsed
        .data
        .map(Answer::Data)
        .ok_or_else(|| ApiError::permanent(Service::Linear, "answer without data"))
}

fn required<T>(answer: Answer<T>, what: &str) -> Result<T, ApiError> {
    match answer {
        Answer::Data(t) => Ok(t),
        Answer::NotFound => Err(ApiError::permanent(
            Service::Linear,
            format!("{what} not found"),
        )),
    }
}

#[derive(Deserialize)]
struct IssueData {
    issue: Issue,
}

/// Parses `issue(id:)`: `None` when Linear has no such issue.
pub fn parse_issue(response: &HttpResponse) -> Result<Option<Issue>, ApiError> {
    Ok(match answer::<IssueData>(response)? {
        Answer::Data(d) => Some(d.issue),
        Answer::NotFound => None,
    })
}

#[derive(Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

#[derive(Deserialize)]
struct AttachmentNode {
    issue: Issue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentsData {
    #[serde(rename = "attachmentsForURL")]
    attachments_for_url: Nodes<AttachmentNode>,
}

/// Parses `attachmentsForURL`: the first issue the URL is attached to.
pub fn parse_attached_issue(response: &HttpResponse) -> Result<Option<Issue>, ApiError> {
    let data = required(answer::<AttachmentsData>(response)?, "attachment")?;
    Ok(data
        .attachments_for_url
        .nodes
        .into_iter()
        .next()
        .map(|n| n.issue))
}

#[derive(Deserialize)]
struct TeamsData {
    teams: Nodes<Team>,
}

/// Parses `teams(filter:)`: the team, or a permanent error naming the missing key.
pub fn parse_team(response: &HttpResponse, key: &str) -> Result<Team, ApiError> {
    let data = required(answer::<TeamsData>(response)?, "team")?;
    data.teams.nodes.into_iter().next().ok_or_else(|| {
        ApiError::permanent(
            Service::Linear,
            format!("there is no Linear team with key {key} (check LINEAR_TEAM_KEY)"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueCreateData {
    issue_create: Payload<Issue>,
}

#[derive(Deserialize)]
struct Payload<T> {
    success: bool,
    #[serde(alias = "issue", alias = "comment", alias = "attachment")]
    entity: Option<T>,
}

fn created<T>(payload: Payload<T>, what: &str) -> Result<T, ApiError> {
    match (payload.success, payload.entity) {
        (true, Some(t)) => Ok(t),
        _ => Err(ApiError::permanent(
            Service::Linear,
            format!("{what} was not created"),
        )),
    }
}

/// Parses `issueCreate`.
pub fn parse_issue_create(response: &HttpResponse) -> Result<Issue, ApiError> {
    let data: IssueCreateData = required(answer(response)?, "issue")?;
    created(data.issue_create, "issue")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentCreateData {
    attachment_create: Payload<Value>,
}

/// Parses `attachmentCreate`.
pub fn parse_attachment_create(response: &HttpResponse) -> Result<(), ApiError> {
    let data: AttachmentCreateData = required(answer(response)?, "issue")?;
    created(data.attachment_create, "attachment").map(|_| ())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentCreateData {
    comment_create: Payload<Comment>,
}

/// Parses `commentCreate`.
pub fn parse_comment_create(response: &HttpResponse) -> Result<Comment, ApiError> {
    let data: CommentCreateData = required(answer(response)?, "issue")?;
    created(data.comment_create, "comment")
}

#[derive(Deserialize)]
struct CommentData {
    comment: Comment,
}

/// Parses `comment(id:)`: `None` when there is no such comment.
pub fn parse_comment(response: &HttpResponse) -> Result<Option<Comment>, ApiError> {
    Ok(match answer::<CommentData>(response)? {
        Answer::Data(d) => Some(d.comment),
        Answer::NotFound => None,
    })
}

/// The title of an issue bugbot creates: the report's title or first line, bounded.
pub fn issue_title(report_title: Option<&str>, report_text: &str) -> String {
    let raw = report_title
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or_else(|| report_text.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("Bug report");
    let (mut title, cut) = crate::job::truncate(raw, 120);
    if cut {
        title.push('…');
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            retry_after: None,
            body: body.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn builds_requests_with_the_key_and_variables() {
        let api = LinearApi::new("http://x/linear/", "lin_api_key");
        let r = api.issue("ENG-1");
        assert_eq!(r.url, "http://x/linear/graphql");
        assert!(
            r.headers
                .contains(&("authorization".into(), "lin_api_key".into()))
        );
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["variables"]["id"], "ENG-1");
        assert_eq!(body["query"], ISSUE_QUERY);
    }

    #[test]
    fn parses_answers_and_not_found() {
        let issue = json!({"id":"u1","identifier":"ENG-1","title":"t","url":"https://linear.app/x/issue/ENG-1","team":{"id":"t","key":"ENG"}});
        assert_eq!(
            parse_issue(&ok(json!({"data":{"issue": issue}})))
                .unwrap()
                .unwrap()
                .identifier,
            "ENG-1"
        );
        let nf = ok(
            json!({"data":null,"errors":[{"message":"Entity not found: Issue","extensions":{"type":"invalid input"}}]}),
        );
        assert_eq!(parse_issue(&nf).unwrap(), None);
        let none = ok(json!({"data":{"attachmentsForURL":{"nodes":[]}}}));
        assert_eq!(parse_attached_issue(&none).unwrap(), None);
        let err = parse_team(&ok(json!({"data":{"teams":{"nodes":[]}}})), "ENG").unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("ENG"));
    }

    #[test]
    fn classifies_graphql_errors() {
        let limited = HttpResponse {
            status: 400,
            retry_after: Some("3".into()),
            body: json!({"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED"}}]}).to_string(),
            ..Default::default()
        };
        let e = parse_issue(&limited).unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after_secs(), Some(3));
        let forbidden = ok(
            json!({"data":null,"errors":[{"message":"Forbidden","extensions":{"code":"FORBIDDEN"}}]}),
        );
        assert!(!parse_issue(&forbidden).unwrap_err().is_transient());
        let down = HttpResponse {
            status: 503,
            retry_after: None,
            body: "upstream".into(),
            ..Default::default()
        };
        assert!(parse_issue(&down).unwrap_err().is_transient());
    }

    #[test]
    fn titles() {
        assert_eq!(
            issue_title(None, "\n  Cart total wrong\nmore"),
            "Cart total wrong"
        );
        assert_eq!(issue_title(Some("Given"), "x"), "Given");
        assert_eq!(issue_title(None, ""), "Bug report");
        assert!(issue_title(None, &"x".repeat(500)).chars().count() <= 121);
    }
}
