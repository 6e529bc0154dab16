//! Daily model budgets: a fix reserves its largest possible cost (its `max_budget_usd`) before it
//! starts, and settles to what it really cost when it ends. A fix whose reservation would take its
//! requester or the deployment past the day's budget is refused with a clear message. Reserving the
//! largest cost means fixes running at once can never overshoot together; a job that never settles
//! (its worker vanished) keeps counting its reservation, erring on the side of spending less.
//!
//! Days are UTC. The state is one small value per day, kept by the consumer's `SpendLedger`
//! Durable Object.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The deployment's daily budgets, in US dollars (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budgets {
    /// One requester's spend per UTC day.
    pub per_user_usd: Option<f64>,
    /// Everyone's spend per UTC day.
    pub per_deployment_usd: Option<f64>,
}

impl Budgets {
    /// Reads `DAILY_BUDGET_USD_PER_USER` and `DAILY_BUDGET_USD` (unset, empty or `0`: no limit).
    pub fn from_vars(per_user: Option<&str>, per_deployment: Option<&str>) -> Self {
        let parse = |v: Option<&str>| {
            v.and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|x| *x > 0.0 && x.is_finite())
        };
        Self {
            per_user_usd: parse(per_user),
            per_deployment_usd: parse(per_deployment),
        }
    }
}

/// Why a fix may not start today.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The requester's budget would be passed.
    #[error(
        "your model budget for today is used up (${spent:.2} of ${limit:.2} spent or reserved; a fix may cost up to ${asked:.2}). It resets at 00:00 UTC."
    )]
    User {
        /// Spent and reserved so far.
        spent: f64,
        /// The budget.
        limit: f64,
        /// What this fix would reserve.
        asked: f64,
    },
    /// The deployment's budget would be passed.
    #[error(
        "this bugbot's model budget for today is used up (${spent:.2} of ${limit:.2} spent or reserved; a fix may cost up to ${asked:.2}). It resets at 00:00 UTC."
    )]
    Deployment {
        /// Spent and reserved so far.
        spent: f64,
        /// The budget.
        limit: f64,
        /// What this fix would reserve.
        asked: f64,
    },
}

/// One job's share of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Who asked.
    pub user: String,
    /// Reserved (until settled) or spent (after).
    pub usd: f64,
    /// Settled to its real cost.
    pub settled: bool,
}

/// A UTC day's spend, by job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DaySpend {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Each job's entry.
    pub jobs: BTreeMap<String, Entry>,
}

/// Today's figures, for `scripts/jobs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Settled spend.
    pub spent_usd: f64,
    /// Reservations of fixes still running.
    pub reserved_usd: f64,
    /// Jobs counted.
    pub jobs: usize,
    /// Spent and reserved per user.
    pub users: BTreeMap<String, f64>,
}

/// The UTC day (`YYYY-MM-DD`) of a Unix time in milliseconds.
pub fn day_of(unix_ms: u64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = i64::try_from(unix_ms / 86_400_000).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl DaySpend {
    /// This spend if it is `day`'s, else a new day's.
    pub fn on(self, day: &str) -> Self {
        if self.day == day {
            self
        } else {
            Self {
                day: day.to_owned(),
                jobs: BTreeMap::new(),
            }
        }
    }

    fn user_total(&self, user: &str) -> f64 {
        self.jobs
            .values()
            .filter(|e| e.user == user)
            .map(|e| e.usd)
            .sum()
    }

    fn total(&self) -> f64 {
        self.jobs.values().map(|e| e.usd).sum()
    }

    /// Reserves `usd` for `job` by `user`, or says why not. A job that already has an entry keeps
    /// it (a redelivery does not reserve twice).
    pub fn reserve(
        &mut self,
        job: &str,
        user: &str,
        usd: f64,
        budgets: Budgets,
    ) -> Result<(), Refusal> {
        if self.jobs.contains_key(job) {
            return Ok(());
        }
        if let Some(limit) = budgets.per_user_usd {
            let spent = self.user_total(user);
            if spent + usd > limit + 1e-9 {
                return Err(Refusal::User {
                    spent,
                    limit,
                    asked: usd,
                });
            }
        }
        if let Some(limit) = budgets.per_deployment_usd {
            let spent = self.total();
            if spent + usd > limit + 1e-9 {
                return Err(Refusal::Deployment {
                    spent,
                    limit,
                    asked: usd,
                });
            }
        }
        self.jobs.insert(
            job.to_owned(),
            Entry {
                user: user.to_owned(),
                usd,
                settled: false,
            },
        );
        Ok(())
    }

    /// Replaces `job`'s reservation with what it cost (a job without one is recorded as `user`'s).
    pub fn settle(&mut self, job: &str, user: &str, usd: f64) {
        let entry = self.jobs.entry(job.to_owned()).or_insert_with(|| Entry {
            user: user.to_owned(),
            usd,
            settled: true,
        });
        entry.usd = usd.max(0.0);
        entry.settled = true;
    }

    /// Adds spend outside any fix (operators' corrections; tests).
    pub fn add(&mut self, user: &str, usd: f64) {
        let key = format!("manual-{}", self.jobs.len());
        self.settle(&key, user, usd);
    }

    /// The day's figures.
    pub fn totals(&self) -> Totals {
        let mut users = BTreeMap::new();
        for e in self.jobs.values() {
            *users.entry(e.user.clone()).or_insert(0.0) += e.usd;
        }
        Totals {
            day: self.day.clone(),
            spent_usd: self
                .jobs
                .values()
                .filter(|e| e.settled)
                .map(|e| e.usd)
                .sum(),
            reserved_usd: self
                .jobs
                .values()
                .filter(|e| !e.settled)
                .map(|e| e.usd)
                .sum(),
            jobs: self.jobs.len(),
            users,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGETS: Budgets = Budgets {
        per_user_usd: Some(5.0),
        per_deployment_usd: Some(8.0),
    };

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_055_691_551), "2026-11-30");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn reservations_count_until_settled_and_a_user_past_the_budget_is_refused() {
        let mut d = DaySpend::default().on("2026-11-30");
        d.reserve("j1", "ann", 2.0, BUDGETS).unwrap();
        d.reserve("j2", "ann", 2.0, BUDGETS).unwrap();
        // A redelivery does not reserve twice.
        d.reserve("j2", "ann", 2.0, BUDGETS).unwrap();
        let refused = d.reserve("j3", "ann", 2.0, BUDGETS).unwrap_err();
        assert!(matches!(refused, Refusal::User { spent, .. } if (spent - 4.0).abs() < 1e-9));
        assert!(refused.to_string().contains("$4.00 of $5.00"), "{refused}");
        // Settling to the real (smaller) cost frees the rest.
        d.settle("j1", "ann", 0.25);
        d.reserve("j3", "ann", 2.0, BUDGETS).unwrap();
        let t = d.totals();
        assert_eq!((t.jobs, t.spent_usd, t.reserved_usd), (3, 0.25, 4.0));
    }

    #[test]
    fn the_deployments_budget_holds_across_users() {
        let mut d = DaySpend::default().on("2026-11-30");
        d.reserve("a", "ann", 4.0, BUDGETS).unwrap();
        d.reserve("b", "bob", 4.0, BUDGETS).unwrap();
        assert!(matches!(
            d.reserve("c", "cy", 1.0, BUDGETS),
            Err(Refusal::Deployment { .. })
        ));
        assert!(
            d.clone()
                .reserve("c", "cy", 1.0, Budgets::default())
                .is_ok()
        );
    }

    #[test]
    fn a_new_day_starts_empty() {
        let mut d = DaySpend::default().on("2026-11-30");
        d.add("ann", 5.0);
        assert!(d.clone().reserve("x", "ann", 0.1, BUDGETS).is_err());
        let mut next = d.on("2026-12-01");
        assert!(next.reserve("x", "ann", 0.1, BUDGETS).is_ok());
    }

    #[test]
    fn budgets_come_from_configuration() {
        assert_eq!(Budgets::from_vars(None, Some("")), Budgets::default());
        assert_eq!(
            Budgets::from_vars(Some("2.5"), Some("0")),
            Budgets {
                per_user_usd: Some(2.5),
                per_deployment_usd: None
            }
        );
    }
}
