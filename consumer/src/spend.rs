//! Daily model budgets (`bugbot_shared::budget`): the `SpendLedger` Durable Object (one, named
//! `ledger`) keeps today's spend; a fix reserves its largest cost before it runs and settles to its
//! real cost after.

use crate::config::var;
use bugbot_shared::budget::{Budgets, DaySpend, Refusal, Totals, day_of};
use bugbot_shared::http::{ApiError, Service};
use serde::{Deserialize, Serialize};
use worker::{
    DurableObject, Env, Method, Request, RequestInit, Response, Result, State, durable_object,
};

/// Storage key of the day's spend.
const DAY_KEY: &str = "day";

/// One change to the day's spend.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Change {
    Reserve {
        job: String,
        user: String,
        usd: f64,
        per_user: Option<f64>,
        per_deployment: Option<f64>,
    },
    Settle {
        job: String,
        user: String,
        usd: f64,
    },
    Add {
        user: String,
        usd: f64,
    },
}

/// The day's spend.
#[allow(missing_debug_implementations)] // State holds JS handles.
#[durable_object]
pub struct SpendLedger {
    state: State,
}

impl DurableObject for SpendLedger {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    /// `POST /` with a [`Change`]: 200 with today's totals, or 409 with the refusal's text.
    /// `GET /`: today's totals.
    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let today = day_of(worker::Date::now().as_millis());
        let mut day = storage
            .get::<DaySpend>(DAY_KEY)
            .await?
            .unwrap_or_default()
            .on(&today);
        if req.method() == Method::Post {
            match req.json::<Change>().await? {
                Change::Reserve {
                    job,
                    user,
                    usd,
                    per_user,
                    per_deployment,
                } => {
                    let budgets = Budgets {
                        per_user_usd: per_user,
                        per_deployment_usd: per_deployment,
                    };
                    if let Err(refusal) = day.reserve(&job, &user, usd, budgets) {
                        return Response::error(refusal.to_string(), 409);
                    }
                }
                Change::Settle { job, user, usd } => day.settle(&job, &user, usd),
                Change::Add { user, usd } => day.add(&user, usd),
            }
            storage.put(DAY_KEY, &day).await?;
        }
        Response::from_json(&day.totals())
    }
}

async fn send(env: &Env, change: Option<&Change>) -> std::result::Result<Response, ApiError> {
    let unreachable = |_| ApiError::network(Service::Executor, "the spend ledger did not answer");
    let namespace = env.durable_object("SPEND").map_err(unreachable)?;
    let stub = namespace
        .id_from_name("ledger")
        .and_then(|id| id.get_stub())
        .map_err(unreachable)?;
    let mut init = RequestInit::new();
    if let Some(change) = change {
        let body = serde_json::to_string(change)
            .map_err(|e| ApiError::permanent(Service::Executor, e.to_string()))?;
        init.with_method(Method::Post).with_body(Some(body.into()));
    }
    let req = Request::new_with_init("http://spend/", &init).map_err(unreachable)?;
    stub.fetch_with_request(req).await.map_err(unreachable)
}

/// The budgets configured for this deployment.
fn budgets(env: &Env) -> Budgets {
    Budgets::from_vars(
        var(env, "DAILY_BUDGET_USD_PER_USER").as_deref(),
        var(env, "DAILY_BUDGET_USD").as_deref(),
    )
}

/// Reserves `usd` for `job` by `user`; `Ok(Err(text))` when the day's budget refuses it.
pub async fn reserve(
    env: &Env,
    job: &str,
    user: &str,
    usd: f64,
) -> std::result::Result<std::result::Result<(), String>, ApiError> {
    let budgets = budgets(env);
    if budgets == Budgets::default() {
        return Ok(Ok(()));
    }
    let change = Change::Reserve {
        job: job.to_owned(),
        user: user.to_owned(),
        usd,
        per_user: budgets.per_user_usd,
        per_deployment: budgets.per_deployment_usd,
    };
    let mut answer = send(env, Some(&change)).await?;
    match answer.status_code() {
        200 => Ok(Ok(())),
        409 => Ok(Err(answer.text().await.unwrap_or_else(|_| {
            Refusal::User {
                spent: 0.0,
                limit: 0.0,
                asked: usd,
            }
            .to_string()
        }))),
        status => Err(ApiError::network(
            Service::Executor,
            format!("the spend ledger answered {status}"),
        )),
    }
}

/// Records what `job` really cost (nothing to record when no budget is configured).
pub async fn settle(
    env: &Env,
    job: &str,
    user: &str,
    usd: f64,
) -> std::result::Result<(), ApiError> {
    if budgets(env) == Budgets::default() {
        return Ok(());
    }
    let change = Change::Settle {
        job: job.to_owned(),
        user: user.to_owned(),
        usd,
    };
    send(env, Some(&change)).await.map(drop)
}

/// Adds spend outside any fix (the dev route, for tests).
pub async fn add(env: &Env, user: &str, usd: f64) -> std::result::Result<Totals, ApiError> {
    let mut answer = send(
        env,
        Some(&Change::Add {
            user: user.to_owned(),
            usd,
        }),
    )
    .await?;
    answer
        .json()
        .await
        .map_err(|e| ApiError::permanent(Service::Executor, e.to_string()))
}

/// Today's totals.
pub async fn totals(env: &Env) -> std::result::Result<Totals, ApiError> {
    let mut answer = send(env, None).await?;
    answer
        .json()
        .await
        .map_err(|e| ApiError::permanent(Service::Executor, e.to_string()))
}
