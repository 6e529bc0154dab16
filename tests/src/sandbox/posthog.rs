//! PostHog stand-in (`/posthog/api/environments/{id}/...`): persons by e-mail and session recordings.
//!
//! PostHog publishes no spec file; the routes and shapes follow its API reference. Strict on what
//! bugbot may send: Bearer personal API key, the configured project, known query parameters, the
//! current paths (the legacy `/api/projects/{id}/…` form is not served). It behaves as PostHog does
//! where that matters: the persons filter matches an e-mail exactly (case included), and the
//! recordings list covers `date_from`..`date_to`, by default only the last three days.

use super::Sandbox;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the PostHog stand-in holds.
#[derive(Debug, Default, Serialize)]
pub struct PosthogState {
    /// Persons.
    pub persons: Vec<Person>,
    /// Recordings.
    pub recordings: Vec<Value>,
}

/// A person.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    /// UUID.
    pub id: String,
    /// Distinct ids.
    pub distinct_ids: Vec<String>,
    /// E-mail.
    pub email: String,
}

fn ph_error(status: StatusCode, code: &str, detail: &str) -> Response {
    let kind = if status == StatusCode::UNAUTHORIZED {
        "authentication_error"
    } else {
        "invalid_request"
    };
    (
        status,
        Json(json!({ "type": kind, "code": code, "detail": detail, "attr": null })),
    )
        .into_response()
}

/// Why PostHog would refuse the call (credentials, project, unknown query parameters), if it would.
fn refusal(
    sb: &Sandbox,
    headers: &HeaderMap,
    project: &str,
    query: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", sb.credentials.posthog_api_key));
    if !ok {
        return Some(ph_error(
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "Authentication credentials were not provided.",
        ));
    }
    if project != sb.credentials.posthog_project_id {
        return Some(ph_error(StatusCode::NOT_FOUND, "not_found", "Not found."));
    }
    query
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| {
            ph_error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                &format!("unknown parameter {k}"),
            )
        })
}

fn parse_utc(iso: &str) -> Option<u64> {
    bugbot_shared::github_app::parse_utc(iso)
}

/// `GET /posthog/api/environments/{id}/persons/?email=`.
pub async fn persons(
    State(sb): State<Sandbox>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = refusal(
        &sb,
        &headers,
        &project,
        &query,
        &["email", "limit", "offset"],
    ) {
        return r;
    }
    let email = query.get("email").cloned().unwrap_or_default();
    let s = sb.lock();
    let results: Vec<Value> = s
        .posthog
        .persons
        .iter()
        .filter(|p| email.is_empty() || p.email == email)
        .map(|p| {
            json!({
                "id": p.id, "uuid": p.id, "name": p.email, "distinct_ids": p.distinct_ids,
                "properties": { "email": p.email }, "created_at": "2026-01-05T10:00:00Z", "is_identified": true
            })
        })
        .collect();
    Json(json!({ "next": null, "previous": null, "results": results })).into_response()
}

/// `GET /posthog/api/environments/{id}/session_recordings/?person_uuid=&date_from=&date_to=&limit=`.
pub async fn recordings(
    State(sb): State<Sandbox>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = refusal(
        &sb,
        &headers,
        &project,
        &query,
        &["person_uuid", "limit", "offset", "date_from", "date_to"],
    ) {
        return r;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // PostHog's default window is the last three days (`date_from: "-3d"`).
    let (from, to) = match (
        query.get("date_from").map(|d| parse_utc(d)),
        query.get("date_to").map(|d| parse_utc(d)),
    ) {
        (Some(None), _) | (_, Some(None)) => {
            return ph_error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "date_from and date_to must be ISO 8601 times",
            );
        }
        (from, to) => (
            from.flatten().unwrap_or(now.saturating_sub(3 * 24 * 3600)),
            to.flatten().unwrap_or(u64::MAX),
        ),
    };
    let limit: usize = match query.get("limit").map(|l| l.parse()) {
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return ph_error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "limit must be a number",
            );
        }
        None => 50,
    };
    let s = sb.lock();
    let distinct: Vec<String> = match query.get("person_uuid") {
        Some(uuid) => s
            .posthog
            .persons
            .iter()
            .find(|p| &p.id == uuid)
            .map(|p| p.distinct_ids.clone())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let results: Vec<Value> = s
        .posthog
        .recordings
        .iter()
        .filter(|r| {
            !query.contains_key("person_uuid")
                || r["distinct_id"]
                    .as_str()
                    .is_some_and(|d| distinct.iter().any(|x| x == d))
        })
        .filter(|r| {
            r["start_time"]
                .as_str()
                .and_then(parse_utc)
                .is_some_and(|t| (from..=to).contains(&t))
        })
        .take(limit)
        .cloned()
        .collect();
    Json(json!({ "results": results, "has_next": false, "version": 3 })).into_response()
}

/// `GET /posthog/api/environments/{id}/session_recordings/{session_id}/`.
pub async fn recording(
    State(sb): State<Sandbox>,
    Path((project, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refusal(&sb, &headers, &project, &BTreeMap::new(), &[]) {
        return r;
    }
    let s = sb.lock();
    match s
        .posthog
        .recordings
        .iter()
        .find(|r| r["id"] == session.as_str())
    {
        Some(r) => Json(r.clone()).into_response(),
        None => ph_error(StatusCode::NOT_FOUND, "not_found", "Not found."),
    }
}

/// `POST /_sandbox/posthog/seed` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Persons by e-mail.
    #[serde(default)]
    pub persons: Vec<SeedPerson>,
    /// Recordings.
    #[serde(default)]
    pub recordings: Vec<SeedRecording>,
}

/// A person to seed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPerson {
    /// E-mail.
    pub email: String,
    /// Distinct id.
    pub distinct_id: String,
}

/// A recording to seed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRecording {
    /// Session id.
    pub id: String,
    /// The recorded person's distinct id.
    pub distinct_id: String,
    /// Start.
    pub start_time: String,
    /// Seconds.
    pub duration: f64,
    /// Console errors.
    #[serde(default)]
    pub console_errors: u64,
    /// Clicks.
    #[serde(default)]
    pub clicks: u64,
    /// First URL.
    #[serde(default)]
    pub start_url: Option<String>,
}

/// Seeds persons and recordings.
pub async fn seed(State(sb): State<Sandbox>, Json(seed): Json<Seed>) -> StatusCode {
    let mut s = sb.lock();
    for p in seed.persons {
        let n = s.posthog.persons.len() + 1;
        s.posthog.persons.push(Person {
            id: format!("0193a1b2-0000-7000-8000-{n:012x}"),
            distinct_ids: vec![p.distinct_id],
            email: p.email,
        });
    }
    for r in seed.recordings {
        s.posthog.recordings.push(json!({
            "id": r.id, "distinct_id": r.distinct_id, "viewed": false,
            "recording_duration": r.duration, "active_seconds": r.duration, "inactive_seconds": 0,
            "start_time": r.start_time, "end_time": r.start_time,
            "click_count": r.clicks, "keypress_count": 0, "mouse_activity_count": r.clicks,
            "console_log_count": 0, "console_warn_count": 0, "console_error_count": r.console_errors,
            "start_url": r.start_url, "person": null, "storage": "object_storage", "snapshot_source": "web"
        }));
    }
    StatusCode::NO_CONTENT
}
