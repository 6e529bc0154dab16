//! The executor Container's way out, decided outside it.
//!
//! A fix needs two destinations: the repository's git host and the model API. The Container starts
//! with the internet off, and the runtime hands every plain-HTTP request it makes (port 80, any
//! address) to the consumer Worker, which forwards it only when [`decide`] allows it and attaches
//! the credential itself: the Container holds neither the installation token nor the API key.
//! Inside it, the repository is `http://<git host>/<owner>/<name>.git` and the model API
//! `http://api.anthropic.com`; the Worker sends them on over HTTPS (production) or to the local
//! stand-ins. Everything else is refused with a 403 that says why, and counted for the report.
//!
//! The agent runs in the same Container, so a destination alone must not be enough: each request
//! has to present the run's stand-in credential — the git password the executor hands to git
//! (the request's `github_token`, a random key) or the model key in the executor's environment
//! (`ANTHROPIC_API_KEY`, random per Container) — which the agent's user cannot read. Only then is
//! it swapped for the real one. The agent can reach nothing by itself.

use serde::{Deserialize, Serialize};

/// The model API's host as the Container addresses it.
pub const MODEL_HOST: &str = "api.anthropic.com";
/// The git host's name inside the Container when the real clone URL has no name to reuse (a local
/// stand-in reached by IP address). `.test` is reserved: it is never a real host.
pub const LOCAL_GIT_HOST: &str = "git.bugbot.test";
/// The model API's paths a fix uses.
const MODEL_PATHS: &[&str] = &["/v1/messages", "/v1/messages/count_tokens"];
/// How many refused hosts a run's report names (a looping agent must not grow it without end).
pub const MAX_REFUSED_HOSTS: usize = 20;

/// What one run may reach, handed by the Worker to the runtime with the interception (the
/// Container never sees it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The job the run belongs to (refusals are counted on it).
    pub job: String,
    /// The git host's name inside the Container.
    pub git_host: String,
    /// `owner/name` of the one repository the run may fetch and push.
    pub repo: String,
    /// Where the repository's URLs go: the real clone URL without `/<owner>/<name>.git`.
    pub git_upstream: String,
    /// The installation token attached to git requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_token: Option<String>,
    /// The git password the executor presents (the run's `github_token` inside the Container).
    #[serde(default)]
    pub run_key: String,
    /// The model key the executor presents (the Container's `ANTHROPIC_API_KEY`).
    #[serde(default)]
    pub model_key: String,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("job", &self.job)
            .field("git_host", &self.git_host)
            .field("repo", &self.repo)
            .field("git_upstream", &self.git_upstream)
            .field("git_token", &self.git_token.as_ref().map(|_| "[REDACTED]"))
            .field("run_key", &"[REDACTED]")
            .field("model_key", &"[REDACTED]")
            .finish()
    }
}

/// A clone URL that cannot be routed through the egress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the clone URL {0:?} does not end in the repository's /<owner>/<name>.git")]
pub struct UnroutableCloneUrl(pub String);

impl Grant {
    /// The grant for a run on the repository cloned from `clone_url` (`…/<owner>/<name>.git`),
    /// and the repository URL the Container is given instead of `clone_url`.
    pub fn for_clone_url(
        job: &str,
        clone_url: &str,
        git_token: Option<String>,
    ) -> Result<(Self, String), UnroutableCloneUrl> {
        let unroutable = || UnroutableCloneUrl(clone_url.to_owned());
        let trimmed = clone_url.trim_end_matches('/');
        let without_git = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        let mut segments = without_git.rsplitn(3, '/');
        let (name, owner, upstream) = match (segments.next(), segments.next(), segments.next()) {
            (Some(n), Some(o), Some(u)) if !n.is_empty() && !o.is_empty() && u.contains("://") => {
                (n, o, u)
            }
            _ => return Err(unroutable()),
        };
        let repo = format!("{owner}/{name}");
        let suffix = format!("/{repo}.git");
        let (_, rest) = upstream.split_once("://").ok_or_else(unroutable)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        if host.is_empty() || authority.contains('@') || upstream.ends_with(':') {
            return Err(unroutable());
        }
        // A name is kept (github.com inside is github.com outside); an address gets a name, since
        // only names are resolved into the intercepted range.
        let is_address =
            host.starts_with('[') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let git_host = if is_address {
            LOCAL_GIT_HOST.to_owned()
        } else {
            host.to_ascii_lowercase()
        };
        let container_url = format!("http://{git_host}{suffix}");
        Ok((
            Self {
                job: job.to_owned(),
                git_host,
                repo,
                git_upstream: upstream.to_owned(),
                git_token,
                run_key: String::new(),
                model_key: String::new(),
            },
            container_url,
        ))
    }
}

/// The credential the Worker attaches to a forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The deployment's Anthropic API key (`x-api-key`).
    ModelKey,
    /// The run's installation token (`Authorization: Basic x-access-token:…`), when it has one.
    GitToken,
}

/// What happens to one request from the Container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it to `url` with `credential` attached.
    Forward {
        /// The upstream URL.
        url: String,
        /// What to attach.
        credential: Credential,
    },
    /// Answer 401 asking for the run's git password (git sends it only when asked).
    Challenge,
    /// Answer 403 with `reason`; `host` is counted on the job.
    Refuse {
        /// The host the request was for.
        host: String,
        /// Why, for the agent and the log.
        reason: String,
    },
}

/// The credentials a request from the Container presents.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// Its `Authorization` header.
    pub authorization: Option<&'a str>,
    /// Its `x-api-key` header.
    pub api_key: Option<&'a str>,
}

/// Whether `given` is the expected secret (constant time; nothing presented never matches).
fn same_secret(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| crate::signature::secret_matches(g, expected))
}

/// Decides a request the Container made to `url` (`http://host/path?query`, as the runtime hands
/// it over) with `method` and the credentials it `presented`; `model_upstream` is where the model
/// API is (Anthropic's or a stand-in).
pub fn decide(
    grant: &Grant,
    model_upstream: &str,
    method: &str,
    url: &str,
    presented: Presented<'_>,
) -> Decision {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let (authority, path_and_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority
        .strip_suffix(":80")
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let path = path_and_query.split('?').next().unwrap_or_default();
    let refuse = |reason: String| Decision::Refuse {
        host: host.clone(),
        reason,
    };
    if path.contains("/../") || path.contains("/./") || path.ends_with("/..") || path.contains('\\')
    {
        return refuse(format!("bugbot refused {host}{path}: path traversal"));
    }
    if host == MODEL_HOST {
        if method != "POST" || !MODEL_PATHS.contains(&path) {
            return refuse(format!(
                "bugbot refused {method} {host}{path}: only the Messages API is reachable"
            ));
        }
        if !same_secret(presented.api_key, &grant.model_key) {
            return refuse(format!(
                "bugbot refused {host}{path}: the model API is the executor's to call"
            ));
        }
        return Decision::Forward {
            url: format!("{}{path_and_query}", model_upstream.trim_end_matches('/')),
            credential: Credential::ModelKey,
        };
    }
    if host == grant.git_host {
        let Some(op) = path.strip_prefix(&format!("/{}.git/", grant.repo)) else {
            return refuse(format!(
                "bugbot refused {host}{path}: this run may reach {} only",
                grant.repo
            ));
        };
        let allowed = matches!(
            (method, op),
            ("GET", "info/refs") | ("POST", "git-upload-pack") | ("POST", "git-receive-pack")
        );
        if !allowed {
            return refuse(format!(
                "bugbot refused {method} {host}{path}: only git's smart HTTP is reachable"
            ));
        }
        if grant.run_key.is_empty()
            || !same_secret(presented.authorization, &git_authorization(&grant.run_key))
        {
            return Decision::Challenge;
        }
        return Decision::Forward {
            url: format!(
                "{}{path_and_query}",
                grant.git_upstream.trim_end_matches('/')
            ),
            credential: Credential::GitToken,
        };
    }
    refuse(format!(
        "bugbot refused a request to {host}: a fix may reach only {} and {MODEL_HOST}",
        grant.git_host
    ))
}

/// Request headers passed on upstream; the rest (any credential the Container sends above all)
/// are dropped.
pub const FORWARDED_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "anthropic-beta",
    "anthropic-version",
    "content-encoding",
    "content-type",
    "git-protocol",
    "user-agent",
];

/// The `Authorization` value git requests carry upstream: GitHub's form for installation tokens.
pub fn git_authorization(token: &str) -> String {
    use base64::Engine as _;
    let pair = format!("x-access-token:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Adds a refusal of `host` to a run's tally (hosts in first-refused order, at most
/// [`MAX_REFUSED_HOSTS`]; the count of each keeps growing).
pub fn tally(refused: &mut Vec<(String, u32)>, host: &str) {
    if let Some((_, n)) = refused.iter_mut().find(|(h, _)| h == host) {
        *n = n.saturating_add(1);
    } else if refused.len() < MAX_REFUSED_HOSTS {
        refused.push((host.to_owned(), 1));
    }
}

/// The line a run's report gets when requests were refused; `None` when none were.
pub fn refused_note(refused: &[(String, u32)]) -> Option<String> {
    if refused.is_empty() {
        return None;
    }
    let hosts: Vec<String> = refused
        .iter()
        .map(|(h, n)| {
            if *n == 1 {
                format!("`{h}`")
            } else {
                format!("`{h}` ({n} requests)")
            }
        })
        .collect();
    Some(format!(
        "⚠️ bugbot refused the run's network requests to {}: a fix may reach only the git host and the model API.",
        hosts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        let mut g = Grant::for_clone_url(
            "j1",
            "https://github.com/acme/shop.git",
            Some("ghs_x".into()),
        )
        .unwrap()
        .0;
        g.run_key = "run-key".into();
        g.model_key = "model-key".into();
        g
    }

    fn git_auth() -> String {
        git_authorization("run-key")
    }

    fn as_executor(auth: &str) -> Presented<'_> {
        Presented {
            authorization: Some(auth),
            api_key: Some("model-key"),
        }
    }

    #[test]
    fn the_container_gets_a_plain_http_url_on_the_same_host() {
        let (g, url) = Grant::for_clone_url("j1", "https://github.com/acme/shop", None).unwrap();
        assert_eq!(url, "http://github.com/acme/shop.git");
        assert_eq!(g.git_host, "github.com");
        assert_eq!(g.git_upstream, "https://github.com");
        assert_eq!(g.repo, "acme/shop");
    }

    #[test]
    fn an_address_gets_the_local_name_and_keeps_its_port_upstream() {
        let (g, url) =
            Grant::for_clone_url("j1", "http://172.17.0.1:5123/git/acme/shop.git", None).unwrap();
        assert_eq!(url, "http://git.bugbot.test/acme/shop.git");
        assert_eq!(g.git_upstream, "http://172.17.0.1:5123/git");
        for bad in [
            "https://github.com/shop.git",
            "https://u:p@github.com/acme/shop.git",
            "github.com/acme/shop.git",
        ] {
            assert!(Grant::for_clone_url("j", bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_smart_http_for_the_one_repository_is_forwarded_with_the_token() {
        let g = grant();
        for (method, path) in [
            ("GET", "/acme/shop.git/info/refs?service=git-upload-pack"),
            ("POST", "/acme/shop.git/git-upload-pack"),
            ("POST", "/acme/shop.git/git-receive-pack"),
        ] {
            assert_eq!(
                decide(
                    &g,
                    "https://api.anthropic.com",
                    method,
                    &format!("http://github.com{path}"),
                    as_executor(&git_auth())
                ),
                Decision::Forward {
                    url: format!("https://github.com{path}"),
                    credential: Credential::GitToken
                },
                "{method} {path}"
            );
        }
    }

    #[test]
    fn git_without_the_run_key_is_asked_for_it_and_never_forwarded() {
        let g = grant();
        let url = "http://github.com/acme/shop.git/info/refs?service=git-receive-pack";
        for presented in [
            Presented::default(),
            as_executor("Basic eC1hY2Nlc3MtdG9rZW46Z3Vlc3M="),
            as_executor(&git_authorization("")),
        ] {
            assert_eq!(decide(&g, "x", "GET", url, presented), Decision::Challenge);
        }
        // A grant without a run key lets nothing through.
        let mut keyless = g.clone();
        keyless.run_key.clear();
        assert_eq!(
            decide(
                &keyless,
                "x",
                "GET",
                url,
                as_executor(&git_authorization(""))
            ),
            Decision::Challenge
        );
    }

    #[test]
    fn other_repositories_and_git_endpoints_are_refused() {
        let g = grant();
        for (method, url) in [
            ("GET", "http://github.com/acme/other.git/info/refs"),
            (
                "GET",
                "http://github.com/acme/shop.git/../other.git/info/refs",
            ),
            ("GET", "http://github.com/acme/shop.git/objects/info/packs"),
            ("DELETE", "http://github.com/acme/shop.git/git-receive-pack"),
            ("GET", "http://github.com/settings/tokens"),
        ] {
            assert!(
                matches!(
                    decide(&g, "x", method, url, as_executor(&git_auth())),
                    Decision::Refuse { .. }
                ),
                "{method} {url}"
            );
        }
    }

    #[test]
    fn the_model_api_is_forwarded_with_the_key_and_nothing_else_of_it() {
        let g = grant();
        assert_eq!(
            decide(
                &g,
                "http://127.0.0.1:9/model/",
                "POST",
                "http://api.anthropic.com/v1/messages?beta=true",
                as_executor("")
            ),
            Decision::Forward {
                url: "http://127.0.0.1:9/model/v1/messages?beta=true".into(),
                credential: Credential::ModelKey
            }
        );
        assert!(matches!(
            decide(
                &g,
                "x",
                "GET",
                "http://api.anthropic.com/v1/models",
                as_executor("")
            ),
            Decision::Refuse { .. }
        ));
        // The agent, which cannot read the executor's key, is refused.
        for key in [None, Some("sk-ant-guess"), Some("")] {
            let presented = Presented {
                authorization: None,
                api_key: key,
            };
            assert!(matches!(
                decide(
                    &g,
                    "x",
                    "POST",
                    "http://api.anthropic.com/v1/messages",
                    presented
                ),
                Decision::Refuse { .. }
            ));
        }
    }

    #[test]
    fn any_other_host_is_refused_with_a_reason() {
        let Decision::Refuse { host, reason } = decide(
            &grant(),
            "x",
            "GET",
            "http://evil.example:80/x?secret=1",
            as_executor(""),
        ) else {
            panic!("forwarded");
        };
        assert_eq!(host, "evil.example");
        assert!(
            reason.contains("github.com and api.anthropic.com"),
            "{reason}"
        );
    }

    #[test]
    fn refusals_are_tallied_within_a_bound() {
        let mut refused = Vec::new();
        tally(&mut refused, "a.example");
        tally(&mut refused, "a.example");
        for i in 0..50 {
            tally(&mut refused, &format!("h{i}.example"));
        }
        assert_eq!(refused.len(), MAX_REFUSED_HOSTS);
        assert_eq!(refused[0], ("a.example".into(), 2));
        let note = refused_note(&refused[..2]).unwrap();
        assert!(
            note.contains("`a.example` (2 requests), `h0.example`"),
            "{note}"
        );
        assert_eq!(refused_note(&[]), None);
    }

    #[test]
    fn git_requests_carry_the_token_as_github_expects() {
        assert_eq!(
            git_authorization("ghs_x"),
            "Basic eC1hY2Nlc3MtdG9rZW46Z2hzX3g="
        );
    }

    #[test]
    fn a_grant_never_prints_its_token() {
        assert!(!format!("{:?}", grant()).contains("ghs_x"));
    }
}
