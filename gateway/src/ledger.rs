//! The admission ledger: one Durable Object (`AdmissionLedger`, a single named instance) that
//! decides, atomically, whether a job is admitted, and puts it on the queue.
//!
//! Why a Durable Object and not KV: KV is eventually consistent (a redelivery reaching another
//! location may not see the first one's key) and takes one write per second per key (a flood would
//! overrun the per-user count). The ledger's requests run one at a time against its own SQLite
//! storage, so "seen before? under the limit? record it" cannot race.
//!
//! Order of work for one job: the decision (dedupe against stored ids and the ones being sent right
//! now; the per-user count over the last hour), then the queue send, then the row. If the send fails
//! nothing is recorded and the gateway answers 503, so the sender may try again; if the row cannot be
//! written after a successful send, the job still runs (a later redelivery could then be sent twice,
//! which the consumer's checkpoints make harmless). Nothing the gateway answered "accepted" is lost.
//!
//! One instance serves every request: a team's bug reports are far below what one object handles
//! (around a thousand small requests a second), and the limit stops floods before that.

use crate::{config, log};
use bugbot_shared::admission::{self, AdmitOutcome, AdmitRequest};
use bugbot_shared::authz::RATE_WINDOW_MS;
use bugbot_shared::job::JobMessage;
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use worker::{
    Date, DurableObject, Env, Method, Request, Response, Result, SqlStorage, SqlStorageValue,
    State, durable_object,
};

/// The ledger's binding and the one instance's name.
pub const BINDING: &str = "ADMISSIONS";
const INSTANCE: &str = "ledger";

/// Old rows are pruned at most this often (ms), on the way of an admission.
const PRUNE_EVERY_MS: i64 = 3_600_000;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS admitted (
        id TEXT PRIMARY KEY,
        rate_key TEXT NOT NULL,
        admitted_ms INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS admitted_by_requester ON admitted (rate_key, admitted_ms);
    CREATE INDEX IF NOT EXISTS admitted_by_time ON admitted (admitted_ms);
";

/// The Durable Object.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct AdmissionLedger {
    state: State,
    env: Env,
    /// Jobs being sent to the queue right now (id → rate key): a redelivery arriving meanwhile is a
    /// duplicate, and they count towards their requester's limit.
    sending: RefCell<HashMap<String, String>>,
    /// When old rows were last pruned.
    pruned_ms: Cell<i64>,
}

impl DurableObject for AdmissionLedger {
    fn new(state: State, env: Env) -> Self {
        if let Err(e) = state.storage().sql().exec(SCHEMA, None) {
            log::error("admission ledger: schema", &[("error", &e.to_string())]);
        }
        Self {
            state,
            env,
            sending: RefCell::new(HashMap::new()),
            pruned_ms: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        match (req.method(), path.as_str()) {
            (Method::Post, "/admit") => {
                let admit: AdmitRequest = req.json().await?;
                let outcome = self.admit(admit).await?;
                Response::from_json(&outcome)
            }
            (Method::Get, "/jobs") => {
                let limit = req
                    .headers()
                    .get("x-limit")?
                    .and_then(|l| l.parse::<i64>().ok())
                    .unwrap_or(20);
                let rows: Vec<RecordRow> = self
                    .sql()
                    .exec(
                        "SELECT record FROM admitted ORDER BY admitted_ms DESC, id DESC LIMIT ?",
                        vec![SqlStorageValue::Integer(limit)],
                    )?
                    .to_array()?;
                json_array(rows.into_iter().map(|r| r.record))
            }
            (Method::Get, _) if path.starts_with("/jobs/") => {
                let id = &path["/jobs/".len()..];
                let rows: Vec<RecordRow> = self
                    .sql()
                    .exec(
                        "SELECT record FROM admitted WHERE id = ?",
                        vec![SqlStorageValue::from(id.to_owned())],
                    )?
                    .to_array()?;
                match rows.into_iter().next() {
                    Some(row) => json_raw(row.record, 200),
                    None => json_raw("null".to_owned(), 404),
                }
            }
            _ => Response::error("not found", 404),
        }
    }
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

impl AdmissionLedger {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    async fn admit(&self, req: AdmitRequest) -> Result<AdmitOutcome> {
        let outcome = self.decide(&req)?;
        if outcome != AdmitOutcome::Admitted {
            return Ok(outcome);
        }
        let message: JobMessage = serde_json::from_str(&req.message)?;
        self.sending
            .borrow_mut()
            .insert(req.id.clone(), req.rate_key.clone());
        let sent = async { self.env.queue(config::QUEUE_BINDING)?.send(&message).await }.await;
        self.sending.borrow_mut().remove(&req.id);
        sent?;
        if let Err(e) = self.record(&req) {
            // On the queue already: the job runs; only its `queued` record and dedupe entry are missing.
            log::error(
                "admission ledger: could not record an enqueued job",
                &[("job", &req.id), ("error", &e.to_string())],
            );
        }
        Ok(outcome)
    }

    /// Seen before (stored or being sent)? Under the limit? No await inside: one step.
    fn decide(&self, req: &AdmitRequest) -> Result<AdmitOutcome> {
        let sending = self.sending.borrow();
        let known = sending.contains_key(&req.id)
            || !self
                .sql()
                .exec(
                    "SELECT 1 AS n FROM admitted WHERE id = ?",
                    vec![SqlStorageValue::from(req.id.clone())],
                )?
                .to_array::<CountRow>()?
                .is_empty();
        let started = if known {
            0
        } else {
            let stored: CountRow = self
                .sql()
                .exec(
                    "SELECT COUNT(*) AS n FROM admitted WHERE rate_key = ? AND admitted_ms > ?",
                    vec![
                        SqlStorageValue::from(req.rate_key.clone()),
                        SqlStorageValue::Integer(now_ms() - RATE_WINDOW_MS as i64),
                    ],
                )?
                .one()?;
            let in_flight = sending.values().filter(|k| **k == req.rate_key).count();
            u32::try_from(stored.n.max(0) as usize + in_flight).unwrap_or(u32::MAX)
        };
        Ok(admission::decide(known, started, req.jobs_per_hour))
    }

    /// Stores the admitted job; now and then forgets jobs older than the retention (dedupe and the
    /// `queued` record end there), in the same write.
    fn record(&self, req: &AdmitRequest) -> Result<()> {
        let now = now_ms();
        let sql = self.sql();
        sql.exec(
            "INSERT OR IGNORE INTO admitted (id, rate_key, admitted_ms, record) VALUES (?, ?, ?, ?)",
            vec![
                SqlStorageValue::from(req.id.clone()),
                SqlStorageValue::from(req.rate_key.clone()),
                SqlStorageValue::Integer(now),
                SqlStorageValue::from(req.record.clone()),
            ],
        )?;
        if now - self.pruned_ms.get() > PRUNE_EVERY_MS {
            self.pruned_ms.set(now);
            sql.exec(
                "DELETE FROM admitted WHERE admitted_ms < ?",
                vec![SqlStorageValue::Integer(
                    now - admission::RETENTION_MS as i64,
                )],
            )?;
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

fn json_raw(body: String, status: u16) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::from_bytes(body.into_bytes())?
        .with_status(status)
        .with_headers(headers))
}

/// A JSON array of already-rendered JSON values.
fn json_array(items: impl Iterator<Item = String>) -> Result<Response> {
    let mut body = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&item);
    }
    body.push(']');
    json_raw(body, 200)
}

/// A stub of the one ledger instance.
pub fn stub(env: &Env) -> Result<worker::Stub> {
    env.durable_object(BINDING)?
        .id_from_name(INSTANCE)?
        .get_stub()
}
