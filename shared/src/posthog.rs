//! PostHog's REST API: persons by e-mail and session recordings (Bearer personal API key).
//!
//! PostHog publishes no spec file; the shapes follow its API reference for
//! `GET /api/environments/{id}/persons/?email=`, `GET /api/environments/{id}/session_recordings/`
//! and `GET /api/environments/{id}/session_recordings/{id}/` (`/api/projects/{id}/…` is the legacy
//! form of the same routes).
//!
//! Two rules the reference does not stress: the recordings list covers only the last three days
//! unless a window is given (`date_from` defaults to `-3d`), so bugbot always sends one around the
//! report ([`RecordingWindow`]); and the persons filter matches an e-mail exactly, case included, so
//! an address is tried as written first ([`email_candidates`]).

use crate::github_api::iso_seconds;
use crate::http::{ApiError, HttpRequest, HttpResponse, Method, Service, encode};
use serde::{Deserialize, Serialize};

/// How many of a person's recent recordings go into a context packet.
pub const RECENT_RECORDINGS: usize = 5;

/// How far before the report a recording may have started and still be listed (PostHog keeps
/// recordings 30 days on its free plan, longer on paid ones; older sessions rarely explain a report).
pub const WINDOW_BEFORE_MS: u64 = 30 * 24 * 3600 * 1000;
/// How far after the report (a report is often written while the session is still recording).
pub const WINDOW_AFTER_MS: u64 = 24 * 3600 * 1000;

/// The dates a recordings list covers (`date_from` / `date_to`, ISO 8601 UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingWindow {
    /// First start time listed.
    pub from: String,
    /// Last start time listed.
    pub to: String,
}

impl RecordingWindow {
    /// The window around a report made at `report_ms` (ms since the epoch).
    pub fn around(report_ms: u64) -> Self {
        Self {
            from: iso_seconds(report_ms.saturating_sub(WINDOW_BEFORE_MS)),
            to: iso_seconds(report_ms.saturating_add(WINDOW_AFTER_MS)),
        }
    }
}

/// The forms of an e-mail address to look up, in order: as written, then lowercased when that
/// differs (PostHog compares exactly; people write `Jane@Acme.io` for an account stored either way).
pub fn email_candidates(email: &str) -> Vec<String> {
    let lower = email.to_lowercase();
    if lower == email {
        vec![lower]
    } else {
        vec![email.to_owned(), lower]
    }
}

/// Where and how to reach PostHog.
#[derive(Debug, Clone)]
pub struct PosthogApi {
    base_url: String,
    /// The web app's URL, for replay links (`https://us.posthog.com`).
    app_url: String,
    project_id: String,
    api_key: String,
}

impl PosthogApi {
    /// A client for one project.
    pub fn new(base_url: &str, app_url: &str, project_id: &str, api_key: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            app_url: app_url.trim_end_matches('/').to_owned(),
            project_id: project_id.to_owned(),
            api_key: api_key.to_owned(),
        }
    }

    /// The configured project.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    fn get(&self, path_and_query: &str) -> HttpRequest {
        HttpRequest::new(
            Service::Posthog,
            Method::Get,
            format!(
                "{}/api/environments/{}/{path_and_query}",
                self.base_url,
                encode(&self.project_id)
            ),
        )
        .header("authorization", format!("Bearer {}", self.api_key))
    }

    /// Persons with this e-mail address.
    pub fn persons_by_email(&self, email: &str) -> HttpRequest {
        self.get(&format!("persons/?email={}", encode(email)))
    }

    /// A person's most recent recordings that started within `window`.
    pub fn recordings_for_person(
        &self,
        person_uuid: &str,
        window: &RecordingWindow,
    ) -> HttpRequest {
        self.get(&format!(
            "session_recordings/?person_uuid={}&date_from={}&date_to={}&limit={RECENT_RECORDINGS}",
            encode(person_uuid),
            encode(&window.from),
            encode(&window.to)
        ))
    }

    /// One recording.
    pub fn recording(&self, session_id: &str) -> HttpRequest {
        self.get(&format!("session_recordings/{}/", encode(session_id)))
    }

    /// The web page where a recording is replayed.
    pub fn replay_url(&self, session_id: &str) -> String {
        format!(
            "{}/project/{}/replay/{}",
            self.app_url,
            encode(&self.project_id),
            encode(session_id)
        )
    }
}

/// A person (only what bugbot uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    /// The person's UUID (PostHog's `id` field).
    pub id: String,
}

#[derive(Deserialize)]
struct Page<T> {
    results: Vec<T>,
}

/// Parses the persons list: the first match, if any.
pub fn parse_first_person(response: &HttpResponse) -> Result<Option<Person>, ApiError> {
    let page: Page<Person> = response.json(Service::Posthog)?;
    Ok(page.results.into_iter().next())
}

/// A session recording, as PostHog describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Session id.
    pub id: String,
    /// The recorded user's distinct id.
    #[serde(default)]
    pub distinct_id: Option<String>,
    /// Start (ISO 8601).
    #[serde(default)]
    pub start_time: Option<String>,
    /// Length in seconds.
    #[serde(default)]
    pub recording_duration: Option<f64>,
    /// Console errors seen during the session.
    #[serde(default)]
    pub console_error_count: Option<u64>,
    /// Clicks.
    #[serde(default)]
    pub click_count: Option<u64>,
    /// The first URL of the session.
    #[serde(default)]
    pub start_url: Option<String>,
}

/// Parses a recordings list.
pub fn parse_recordings(response: &HttpResponse) -> Result<Vec<Recording>, ApiError> {
    let page: Page<Recording> = response.json(Service::Posthog)?;
    Ok(page.results)
}

/// Parses one recording; `None` when PostHog has no such recording (404).
pub fn parse_recording(response: &HttpResponse) -> Result<Option<Recording>, ApiError> {
    if response.status == 404 {
        return Ok(None);
    }
    response.json(Service::Posthog).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_and_links() {
        let api = PosthogApi::new("http://sb/posthog", "https://us.posthog.com", "12", "phx_k");
        let r = api.persons_by_email("jane+x@acme.io");
        assert_eq!(
            r.url,
            "http://sb/posthog/api/environments/12/persons/?email=jane%2Bx%40acme.io"
        );
        let window = RecordingWindow::around(1_764_496_800_000); // 2025-11-30T10:00:00Z
        assert_eq!(
            window,
            RecordingWindow {
                from: "2025-10-31T10:00:00Z".into(),
                to: "2025-12-01T10:00:00Z".into()
            }
        );
        assert_eq!(
            api.recordings_for_person("p-1", &window).url,
            "http://sb/posthog/api/environments/12/session_recordings/?person_uuid=p-1\
             &date_from=2025-10-31T10%3A00%3A00Z&date_to=2025-12-01T10%3A00%3A00Z&limit=5"
        );
        assert!(
            r.headers
                .contains(&("authorization".into(), "Bearer phx_k".into()))
        );
        assert_eq!(
            api.replay_url("s-1"),
            "https://us.posthog.com/project/12/replay/s-1"
        );
        assert!(
            api.recording("../x")
                .url
                .ends_with("session_recordings/..%2Fx/")
        );
    }

    #[test]
    fn emails_are_tried_as_written_then_lowercased() {
        assert_eq!(
            email_candidates("Jane@Acme.io"),
            vec!["Jane@Acme.io".to_owned(), "jane@acme.io".to_owned()]
        );
        assert_eq!(email_candidates("jane@acme.io"), vec!["jane@acme.io"]);
    }

    #[test]
    fn parses_shapes() {
        let ok = |v: serde_json::Value| HttpResponse {
            status: 200,
            retry_after: None,
            body: v.to_string(),
            ..Default::default()
        };
        let p = parse_first_person(&ok(json!({"next":null,"results":[{"id":"0190-aa","uuid":"0190-aa","distinct_ids":["d"],"properties":{"email":"a@b"}}]}))).unwrap();
        assert_eq!(p.unwrap().id, "0190-aa");
        let recs = parse_recordings(&ok(json!({"results":[{"id":"s1","recording_duration":61.5,"console_error_count":2,"start_time":"2026-11-20T10:00:00Z"}],"has_next":false}))).unwrap();
        assert_eq!(recs[0].console_error_count, Some(2));
        let missing = HttpResponse {
            status: 404,
            retry_after: None,
            body: "{}".into(),
            ..Default::default()
        };
        assert_eq!(parse_recording(&missing).unwrap(), None);
    }
}
