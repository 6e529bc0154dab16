//! The job runner's decisions, as pure functions of the job's record, its lease and the last step's
//! outcome: whether a delivery runs, waits for another runner, or only acknowledges a finished job;
//! and how a failed step settles — retry in N seconds (and what to tell the requester meanwhile),
//! or give up. The consumer Worker performs what these say.
//!
//! Retries are shaped for real outages: exponential backoff with jitter to a cap, `Retry-After`
//! honoured up to Cloudflare Queues' 12-hour delay limit, and giving up by *time* since the job
//! first failed (default six hours), not by a count — so a job outlives an hour-long outage of any
//! service without an operator.

use crate::http::{ApiError, backoff_seconds};
use serde::{Deserialize, Serialize};

/// Cloudflare Queues' longest retry delay.
pub const MAX_RETRY_DELAY_SECS: u32 = 12 * 3600;

/// How long a runner holds a job before another delivery may take it over (renewed while it runs).
pub const LEASE_MS: u64 = 90_000;

/// Retry timing (configuration: `RETRY_BASE_SECONDS`, `RETRY_MAX_SECONDS`,
/// `RETRY_GIVE_UP_AFTER_SECONDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay.
    pub base_secs: u32,
    /// The longest delay of the backoff (a `Retry-After` may ask for more, up to 12 hours).
    pub cap_secs: u32,
    /// Give up once the job has been failing this long.
    pub give_up_after_secs: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_secs: 5,
            cap_secs: 900,
            give_up_after_secs: 6 * 3600,
        }
    }
}

/// How a transiently failed delivery settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Deliver again in this many seconds; tell the requester `notice`.
    In {
        /// Delay.
        secs: u32,
        /// What bugbot waits for and when it tries again (for the progress message).
        notice: String,
    },
    /// The job has been failing for longer than the policy allows: end it, keep it for replay.
    GiveUp,
}

impl RetryPolicy {
    /// Decides the retry of a transient failure. `first_failure_ms` is when the job first failed
    /// (this failure's time if it is the first), `attempt` the delivery's number (1 = first),
    /// `random` a number in `[0, 1)` for the jitter.
    pub fn decide(
        &self,
        error: &ApiError,
        attempt: u32,
        first_failure_ms: u64,
        now_ms: u64,
        random: f64,
    ) -> Retry {
        let failing_for = now_ms.saturating_sub(first_failure_ms) / 1000;
        if failing_for >= u64::from(self.give_up_after_secs) {
            return Retry::GiveUp;
        }
        let secs = backoff_seconds(
            attempt,
            self.base_secs,
            self.cap_secs,
            error.retry_after_secs(),
            random,
        )
        .min(MAX_RETRY_DELAY_SECS);
        let at = crate::packet::format_ms(now_ms + u64::from(secs) * 1000);
        let notice = format!(
            "⏳ {}. bugbot will try again in {} (at {at}).",
            waiting_for(error),
            human_duration(secs)
        );
        Retry::In { secs, notice }
    }
}

/// What the job waits for, in words.
fn waiting_for(error: &ApiError) -> String {
    let service = match error {
        ApiError::Transient { service, .. } | ApiError::Permanent { service, .. } => *service,
    };
    let name = match service {
        crate::http::Service::Discord => "Discord",
        crate::http::Service::Linear => "Linear",
        crate::http::Service::Posthog => "PostHog",
        crate::http::Service::Github => "GitHub",
        crate::http::Service::Executor => "The fix runner",
        crate::http::Service::Kv => "bugbot's storage",
    };
    match (error.status(), error.retry_after_secs()) {
        (Some(403 | 429), Some(_)) => format!("{name} asked bugbot to slow down"),
        (Some(status), _) => format!("{name} is unavailable (HTTP {status})"),
        (None, _) => format!("{name} is not answering"),
    }
}

/// `45 s`, `3 min`, `2 h 5 min`.
pub fn human_duration(secs: u32) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs.div_ceil(60)),
        _ => {
            let (h, m) = (secs / 3600, (secs % 3600) / 60);
            if m == 0 {
                format!("{h} h")
            } else {
                format!("{h} h {m} min")
            }
        }
    }
}

/// How a delivery that ran its steps ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every step is done: the job succeeded.
    Succeeded,
    /// Another delivery took the job over: stop here, touch nothing more.
    TakenOver,
    /// A transient failure: tell the requester `notice`, end this delivery `retrying`, and deliver
    /// again in `secs` seconds.
    RetryIn {
        /// Delay.
        secs: u32,
        /// What bugbot waits for and when it tries again.
        notice: String,
    },
    /// Failing for too long: keep the job for replay, end it `dead`, tell the requester.
    GiveUp,
    /// A permanent failure: end the job `failed` and tell the requester why.
    Fail,
}

/// Decides how a delivery ends from its steps' outcome. `lost_lease` says the error was a save
/// refused because another delivery holds the job; `first_failure_ms` is when the job first
/// failed (now, for a first failure).
pub fn settle(
    outcome: Result<(), &ApiError>,
    lost_lease: bool,
    policy: &RetryPolicy,
    attempt: u32,
    first_failure_ms: u64,
    now_ms: u64,
    random: f64,
) -> Settlement {
    match outcome {
        Ok(()) => Settlement::Succeeded,
        Err(_) if lost_lease => Settlement::TakenOver,
        Err(e) if e.is_transient() => {
            match policy.decide(e, attempt, first_failure_ms, now_ms, random) {
                Retry::In { secs, notice } => Settlement::RetryIn { secs, notice },
                Retry::GiveUp => Settlement::GiveUp,
            }
        }
        Err(_) => Settlement::Fail,
    }
}

/// Who holds a job and until when (kept with the job's record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The delivery holding it (a random id per delivery).
    pub holder: String,
    /// When it lapses unless renewed (ms since the epoch).
    pub expires_at_ms: u64,
}

/// What a delivery of a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Take the lease and run.
    Run,
    /// Another delivery is running it: come back in this many seconds (its lease lapses by then
    /// if its runner died).
    Wait {
        /// Delay.
        secs: u32,
    },
    /// The job already finished: acknowledge, do nothing.
    Finished,
}

/// Decides a delivery from the job's state: finished → acknowledge; a live lease held by another
/// delivery → wait for it; otherwise run (taking over a lapsed lease).
pub fn decide_delivery(
    finished: bool,
    replayed: bool,
    lease: Option<&Lease>,
    holder: &str,
    now_ms: u64,
) -> Delivery {
    if finished && !replayed {
        return Delivery::Finished;
    }
    match lease {
        Some(l) if l.holder != holder && l.expires_at_ms > now_ms => {
            let left = (l.expires_at_ms - now_ms).div_ceil(1000);
            Delivery::Wait {
                secs: u32::try_from(left)
                    .unwrap_or(u32::MAX)
                    .clamp(1, MAX_RETRY_DELAY_SECS),
            }
        }
        _ => Delivery::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Service;

    fn outage() -> ApiError {
        ApiError::Transient {
            service: Service::Linear,
            status: Some(503),
            retry_after_secs: None,
            message: "down".into(),
        }
    }

    #[test]
    fn an_hour_long_outage_is_outlived_with_the_default_policy() {
        let policy = RetryPolicy::default();
        let start = 1_000_000_000_u64;
        let mut now = start;
        let mut attempt = 1;
        // Least jitter: the shortest delays, so the most attempts within the hour.
        while now - start < 3_600_000 {
            match policy.decide(&outage(), attempt, start, now, 0.0) {
                Retry::In { secs, .. } => {
                    assert!(secs <= policy.cap_secs);
                    now += u64::from(secs) * 1000;
                }
                Retry::GiveUp => panic!("gave up after {} s", (now - start) / 1000),
            }
            attempt += 1;
        }
        assert!(attempt < 100, "within Queues' 100 retries: {attempt}");
        let later = start + u64::from(policy.give_up_after_secs) * 1000;
        assert_eq!(
            policy.decide(&outage(), attempt, start, later, 0.5),
            Retry::GiveUp
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_twelve_hours() {
        let policy = RetryPolicy::default();
        let limited = |secs| ApiError::Transient {
            service: Service::Github,
            status: Some(403),
            retry_after_secs: Some(secs),
            message: "rate limited".into(),
        };
        let Retry::In { secs, notice } = policy.decide(&limited(1800), 1, 0, 0, 0.0) else {
            panic!()
        };
        assert_eq!(secs, 1800);
        assert!(
            notice.contains("GitHub asked bugbot to slow down"),
            "{notice}"
        );
        assert!(notice.contains("30 min"), "{notice}");
        let Retry::In { secs, .. } = policy.decide(&limited(86_400), 1, 0, 0, 0.0) else {
            panic!()
        };
        assert_eq!(secs, MAX_RETRY_DELAY_SECS);
    }

    #[test]
    fn the_notice_says_what_bugbot_waits_for_and_when() {
        let Retry::In { notice, .. } =
            RetryPolicy::default().decide(&outage(), 1, 1_764_496_800_000, 1_764_496_800_000, 0.0)
        else {
            panic!()
        };
        assert!(
            notice.starts_with("⏳ Linear is unavailable (HTTP 503)."),
            "{notice}"
        );
        assert!(notice.contains("UTC"), "{notice}");
        let silent = ApiError::network(Service::Github, "reset");
        let Retry::In { notice, .. } = RetryPolicy::default().decide(&silent, 2, 0, 0, 0.0) else {
            panic!()
        };
        assert!(notice.contains("GitHub is not answering"), "{notice}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(61), "2 min");
        assert_eq!(human_duration(3600), "1 h");
        assert_eq!(human_duration(7500), "2 h 5 min");
    }

    #[test]
    fn deliveries_run_wait_or_acknowledge() {
        let live = Lease {
            holder: "a".into(),
            expires_at_ms: 10_000,
        };
        assert_eq!(
            decide_delivery(true, false, None, "b", 0),
            Delivery::Finished
        );
        assert_eq!(
            decide_delivery(true, true, None, "b", 0),
            Delivery::Run,
            "a replay runs"
        );
        assert_eq!(
            decide_delivery(false, false, Some(&live), "b", 2_500),
            Delivery::Wait { secs: 8 }
        );
        assert_eq!(
            decide_delivery(false, false, Some(&live), "a", 2_500),
            Delivery::Run
        );
        assert_eq!(
            decide_delivery(false, false, Some(&live), "b", 10_000),
            Delivery::Run,
            "lapsed"
        );
        assert_eq!(decide_delivery(false, false, None, "b", 0), Delivery::Run);
    }

    #[test]
    fn every_outcome_settles() {
        let policy = RetryPolicy::default();
        let settle_at = |outcome: Result<(), &ApiError>, lost: bool, first: u64, now: u64| {
            settle(outcome, lost, &policy, 3, first, now, 0.0)
        };
        assert_eq!(settle_at(Ok(()), false, 0, 0), Settlement::Succeeded);
        assert_eq!(settle_at(Err(&outage()), true, 0, 0), Settlement::TakenOver);
        assert!(matches!(
            settle_at(Err(&outage()), false, 0, 0),
            Settlement::RetryIn { secs: 10, .. }
        ));
        let six_hours = u64::from(policy.give_up_after_secs) * 1000;
        assert_eq!(
            settle_at(Err(&outage()), false, 0, six_hours),
            Settlement::GiveUp
        );
        let refused = ApiError::permanent(Service::Linear, "no such team");
        assert_eq!(settle_at(Err(&refused), false, 0, 0), Settlement::Fail);
        // A lost lease wins over everything: the other delivery decides.
        assert_eq!(settle_at(Err(&refused), true, 0, 0), Settlement::TakenOver);
    }
}
