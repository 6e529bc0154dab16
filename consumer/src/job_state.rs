//! Each job's state, in a Durable Object of its own (`JOBS_STATE`, one instance per job id): its
//! record with the checkpoints of what it already did, and the lease of the delivery running it.
//!
//! Queues deliver at least once and run consumers concurrently, so two deliveries of one job can
//! arrive at the same moment; KV, eventually consistent and limited to one write per key per
//! second, cannot decide between them. The object is strongly consistent and handles one request
//! at a time: a delivery takes the lease before it runs (`/begin`), every save is fenced by the
//! lease (`/save` answers 409 to a delivery that lost it), and a lease whose holder died lapses
//! ([`LEASE_MS`]) so a later delivery takes over. The decisions are `bugbot_shared::runner`'s.

use bugbot_shared::github::GithubThread;
use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::ids::JobId;
use bugbot_shared::job::{JobMessage, JobRecord, JobStatus};
use bugbot_shared::runner::{self, Delivery, LEASE_MS, Lease};
use bugbot_shared::steer::{self, Ask, Plan};
use serde::{Deserialize, Serialize};
use worker::{
    DurableObject, Env, Method, Request, RequestInit, Response, Result, State, Stub, durable_object,
};

/// The binding of the job-state objects.
pub const BINDING: &str = "JOB_STATE";

const RECORD: &str = "record";
const LEASE: &str = "lease";
/// The job's latest message (the next run of a retry or continue is built from it).
const MESSAGE: &str = "message";
/// In an object named after a GitHub issue ([`GithubThread::key`]): its latest fix's job id.
const LATEST: &str = "latest";

/// `POST /begin`.
#[derive(Debug, Serialize, Deserialize)]
struct Begin {
    holder: String,
    /// The message's replay generation (an operator's replay runs a finished job again).
    replay: u32,
    /// The record to start from when the job has none yet.
    queued: JobRecord,
    /// The message being delivered (kept, for a later retry or continue).
    message: JobMessage,
}

/// `/begin`'s answer.
#[derive(Debug, Serialize, Deserialize)]
struct BeginAnswer {
    /// `run`, `wait` or `finished`.
    delivery: String,
    #[serde(default)]
    wait_secs: u32,
    record: JobRecord,
}

/// `POST /save`.
#[derive(Debug, Serialize, Deserialize)]
struct Save {
    holder: String,
    record: JobRecord,
    /// The delivery is over: release the lease.
    #[serde(default)]
    release: bool,
    /// Write whoever holds the lease (the dead-letter consumer's bookkeeping).
    #[serde(default)]
    force: bool,
}

/// One job's state.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct JobState {
    state: State,
    #[allow(dead_code)]
    env: Env,
}

impl DurableObject for JobState {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        let now = worker::Date::now().as_millis();
        match (req.method(), req.path().as_str()) {
            (Method::Get, "/record") => match storage.get::<String>(RECORD).await? {
                Some(record) => Response::ok(record).map(json),
                None => Response::error("no record", 404),
            },
            (Method::Post, "/begin") => {
                let begin: Begin = req.json().await?;
                let record = kept(&storage, RECORD)
                    .await?
                    .unwrap_or_else(|| begin.queued.clone());
                let kept_message: Option<JobMessage> = kept(&storage, MESSAGE).await?;
                if kept_message.is_none_or(|k| k.replay <= begin.message.replay) {
                    storage.put(MESSAGE, to_text(&begin.message)?).await?;
                }
                let lease = storage.get::<Lease>(LEASE).await?;
                let delivery = runner::decide_delivery(
                    record.status.is_final(),
                    begin.replay > record.replay,
                    lease.as_ref(),
                    &begin.holder,
                    now,
                );
                let (name, wait_secs) = match delivery {
                    Delivery::Run => {
                        storage
                            .put(
                                LEASE,
                                Lease {
                                    holder: begin.holder,
                                    expires_at_ms: now + LEASE_MS,
                                },
                            )
                            .await?;
                        ("run", 0)
                    }
                    Delivery::Wait { secs } => ("wait", secs),
                    Delivery::Finished => ("finished", 0),
                };
                Response::from_json(&BeginAnswer {
                    delivery: name.into(),
                    wait_secs,
                    record,
                })
            }
            (Method::Post, "/save") => {
                let save: Save = req.json().await?;
                let lease = storage.get::<Lease>(LEASE).await?;
                let holds = lease.as_ref().is_some_and(|l| l.holder == save.holder);
                if !holds && !save.force {
                    return Response::error("another delivery holds this job", 409);
                }
                storage.put(RECORD, to_text(&save.record)?).await?;
                if holds && save.release {
                    storage.delete(LEASE).await?;
                } else if holds {
                    storage
                        .put(
                            LEASE,
                            Lease {
                                holder: save.holder,
                                expires_at_ms: now + LEASE_MS,
                            },
                        )
                        .await?;
                }
                Response::empty()
            }
            (Method::Post, "/steer") => {
                // One request at a time: two presses at once cannot both resume the job.
                let ask: Ask = req.json().await?;
                let mut record: Option<JobRecord> = kept(&storage, RECORD).await?;
                let message: Option<JobMessage> = kept(&storage, MESSAGE).await?;
                let plan = steer::plan(&ask, message.as_ref(), record.as_ref());
                if let (Plan::Enqueue { message }, Some(record)) = (&plan, record.as_mut()) {
                    storage.put(MESSAGE, to_text(message.as_ref())?).await?;
                    record.record(
                        now,
                        JobStatus::Queued,
                        &format!("{}.asked", ask.action.as_str()),
                        format!("{} asked by {}", ask.action.as_str(), ask.by.name),
                    );
                    storage.put(RECORD, to_text(record)?).await?;
                }
                Response::from_json(&plan)
            }
            (Method::Put, "/latest") => {
                let job = req.text().await?;
                storage.put(LATEST, job.trim()).await?;
                Response::empty()
            }
            (Method::Get, "/latest") => match storage.get::<String>(LATEST).await? {
                Some(job) => Response::ok(job),
                None => Response::error("no fix here yet", 404),
            },
            _ => Response::error("not found", 404),
        }
    }
}

/// Kept as JSON text, as the record is (its u64 fields stay exact).
fn to_text<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// A value kept as JSON text under `key`, if any.
async fn kept<T: serde::de::DeserializeOwned>(
    storage: &worker::Storage,
    key: &str,
) -> Result<Option<T>> {
    match storage.get::<String>(key).await? {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| worker::Error::RustError(e.to_string())),
        None => Ok(None),
    }
}

fn json(mut response: Response) -> Response {
    let _ = response
        .headers_mut()
        .set("content-type", "application/json");
    response
}

fn state_error(e: impl std::fmt::Display) -> ApiError {
    // bugbot's own storage failing behaves like a service's: retry later.
    ApiError::Transient {
        service: Service::Kv,
        status: None,
        retry_after_secs: None,
        message: format!("job state: {e}"),
    }
}

fn stub(env: &Env, id: &JobId) -> std::result::Result<Stub, ApiError> {
    named(env, id.as_str())
}

fn named(env: &Env, name: &str) -> std::result::Result<Stub, ApiError> {
    let namespace = env.durable_object(BINDING).map_err(state_error)?;
    namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(state_error)
}

async fn call(
    stub: &Stub,
    method: Method,
    path: &str,
    body: Option<String>,
) -> std::result::Result<Response, ApiError> {
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let req = Request::new_with_init(&format!("http://job{path}"), &init).map_err(state_error)?;
    stub.fetch_with_request(req).await.map_err(state_error)
}

/// What a delivery found when it began.
#[derive(Debug)]
pub enum Begun {
    /// It holds the lease: run, starting from this record.
    Run(JobRecord),
    /// Another delivery holds it: retry this message later.
    Wait(u32),
    /// The job already finished (this record).
    Finished(JobRecord),
}

/// A delivery's hold on its job: saves are fenced by its lease.
#[derive(Debug, Clone)]
pub struct Holder {
    id: JobId,
    holder: String,
}

/// The save was refused: another delivery took the job over (this one's lease lapsed).
pub const LEASE_LOST: &str = "another delivery took this job over";

impl Holder {
    /// A delivery of job `id`, known as `holder`.
    pub fn new(id: JobId, holder: String) -> Self {
        Self { id, holder }
    }

    /// Takes the lease unless another live delivery holds it.
    pub async fn begin(
        &self,
        env: &Env,
        message: &JobMessage,
    ) -> std::result::Result<Begun, ApiError> {
        let body = serde_json::to_string(&Begin {
            holder: self.holder.clone(),
            replay: message.replay,
            queued: JobRecord::queued(message),
            message: message.clone(),
        })
        .map_err(state_error)?;
        let mut answer = call(&stub(env, &self.id)?, Method::Post, "/begin", Some(body)).await?;
        if answer.status_code() != 200 {
            return Err(state_error(format!("HTTP {}", answer.status_code())));
        }
        let begun: BeginAnswer = answer.json().await.map_err(state_error)?;
        Ok(match begun.delivery.as_str() {
            "run" => Begun::Run(begun.record),
            "wait" => Begun::Wait(begun.wait_secs),
            _ => Begun::Finished(begun.record),
        })
    }

    /// Saves the record and renews the lease (or releases it, when `release`).
    pub async fn save(
        &self,
        env: &Env,
        record: &JobRecord,
        release: bool,
    ) -> std::result::Result<(), ApiError> {
        self.put(env, record, release, false).await
    }

    async fn put(
        &self,
        env: &Env,
        record: &JobRecord,
        release: bool,
        force: bool,
    ) -> std::result::Result<(), ApiError> {
        let body = serde_json::to_string(&Save {
            holder: self.holder.clone(),
            record: record.clone(),
            release,
            force,
        })
        .map_err(state_error)?;
        let answer = call(&stub(env, &self.id)?, Method::Post, "/save", Some(body)).await?;
        match answer.status_code() {
            200..=299 => Ok(()),
            409 => Err(ApiError::Permanent {
                service: Service::Kv,
                status: Some(409),
                message: LEASE_LOST.into(),
            }),
            status => Err(state_error(format!("HTTP {status}"))),
        }
    }
}

/// Whether an error says this delivery lost its job to another.
pub fn lost_lease(e: &ApiError) -> bool {
    e.status() == Some(409) && e.to_string().contains(LEASE_LOST)
}

/// The job's record, if it has one.
pub async fn load(env: &Env, id: &JobId) -> std::result::Result<Option<JobRecord>, ApiError> {
    let mut answer = call(&stub(env, id)?, Method::Get, "/record", None).await?;
    match answer.status_code() {
        200 => answer.json().await.map(Some).map_err(state_error),
        404 => Ok(None),
        status => Err(state_error(format!("HTTP {status}"))),
    }
}

/// Writes the record whoever holds the job (the dead-letter consumer's bookkeeping: the job's
/// deliveries are over).
pub async fn force_save(env: &Env, record: &JobRecord) -> std::result::Result<(), ApiError> {
    Holder::new(record.id.clone(), "dead-letter".into())
        .put(env, record, false, true)
        .await
}

/// Decides an ask about job `id` in its state object (atomically) and answers the plan.
pub async fn steer(env: &Env, id: &JobId, ask: &Ask) -> std::result::Result<Plan, ApiError> {
    let body = serde_json::to_string(ask).map_err(state_error)?;
    let mut answer = call(&stub(env, id)?, Method::Post, "/steer", Some(body)).await?;
    if answer.status_code() != 200 {
        return Err(state_error(format!("HTTP {}", answer.status_code())));
    }
    answer.json().await.map_err(state_error)
}

/// Remembers `job` as the latest fix asked for on a GitHub issue or pull request.
pub async fn remember_latest(
    env: &Env,
    thread: &GithubThread,
    job: &JobId,
) -> std::result::Result<(), ApiError> {
    let answer = call(
        &named(env, &thread.key())?,
        Method::Put,
        "/latest",
        Some(job.to_string()),
    )
    .await?;
    match answer.status_code() {
        200..=299 => Ok(()),
        status => Err(state_error(format!("HTTP {status}"))),
    }
}

/// The latest fix asked for on a GitHub issue or pull request.
pub async fn latest(
    env: &Env,
    thread: &GithubThread,
) -> std::result::Result<Option<JobId>, ApiError> {
    let mut answer = call(&named(env, &thread.key())?, Method::Get, "/latest", None).await?;
    match answer.status_code() {
        200 => {
            let text = answer.text().await.map_err(state_error)?;
            Ok(JobId::parse(text.trim()).ok())
        }
        404 => Ok(None),
        status => Err(state_error(format!("HTTP {status}"))),
    }
}
