//! The admission ledger: one Durable Object (`AdmissionLedger`, a single named instance) that
//! decides, atomically, whether a job is admitted, records it, and puts it on the queue.
//!
//! Why a Durable Object and not KV: KV is eventually consistent (a redelivery reaching another
//! location may not see the first one's key) and takes one write per second per key (a flood would
//! overrun the per-user count). The ledger's requests run one at a time against its own storage, so
//! "seen before? under the limit? record it" cannot race.
//!
//! A transactional outbox: an admission is one SQLite row holding the job's `queued` record and its
//! queue message. The gateway answers the sender once that row is committed (the object's output
//! gate holds the answer until then), so an accepted request survives a queue outage or a restart.
//! The ledger's alarm, set when the outbox stops being empty, drains it moments later
//! ([`FLUSH_DELAY`]) in batches (`sendBatch`), clearing each row's message once it is on the queue;
//! a failed send is retried with backoff. A crash between a send and the clearing sends that batch
//! again, which the consumer's checkpoints make harmless (at least once, as the queue itself).
//!
//! Decisions read only memory ([`AdmissionBook`], rebuilt from the rows when the object starts; it
//! holds ids, rate keys and the outbox's positions and sizes, never a message): one write per
//! admission, and one read and one write per batch, is all the storage work on the way. The
//! message and the record are the runtime's strings from the RPC arguments to SQL, and from SQL to
//! the queue: they are never copied into wasm memory.
//!
//! The gateway calls it by Workers RPC ([`admit`], [`job`], [`recent_jobs`]): no Request, Response
//! or body stream per call, which made a `fetch` to the object cost more. `src/entry.mjs` declares
//! the class the runtime sees, extending `DurableObject` as RPC requires.
//!
//! One instance serves every request: a team's bug reports are far below what one object handles
//! (around a thousand small requests a second), and the limit stops floods before that.

use crate::error::GatewayError;
use crate::{config, log};
use bugbot_shared::admission::{
    self, AdmissionBook, AdmitOutcome, AdmitRequest, Candidate, Outgoing, StoredAdmission,
};
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{
    Date, DateInit, DurableObject, Env, RawMessageBuilder, Request, Response, Result, SqlStorage,
    SqlStorageValue, State, durable_object, js_sys, wasm_bindgen::JsValue,
};

/// The ledger's binding and the one instance's name.
pub const BINDING: &str = "ADMISSIONS";
const INSTANCE: &str = "ledger";

/// How long admitted jobs wait in the outbox before the alarm sends them.
const FLUSH_DELAY: Duration = Duration::from_millis(admission::FLUSH_DELAY_MS);

/// Old rows are pruned at most this often (ms), on the way of an admission.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// `admissions.message` holds the queue message until it is on the queue, then NULL (the outbox is
/// the rows whose message is not NULL).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS admissions (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        rate_key TEXT NOT NULL,
        admitted_ms INTEGER NOT NULL,
        record TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX IF NOT EXISTS admissions_by_time ON admissions (admitted_ms);
    CREATE TABLE IF NOT EXISTS set_aside (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        message TEXT NOT NULL,
        error TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
";

/// The Durable Object.
#[allow(missing_debug_implementations)] // State and Env hold JS handles with no useful Debug.
#[durable_object]
pub struct AdmissionLedger {
    state: State,
    env: Env,
    /// The object's SQL storage (the same handle for the object's life).
    sql: SqlStorage,
    book: RefCell<AdmissionBook>,
    /// Whether `book` was rebuilt from storage. Until it is (storage could not be read at start),
    /// each admission and alarm tries again, and admissions fail (503) rather than decide without
    /// knowing what was admitted.
    book_loaded: Cell<bool>,
    /// An alarm is set, or the alarm is running: admissions need not set one.
    alarm_pending: Cell<bool>,
    /// Consecutive failed sends (for the retry delay).
    failed_sends: Cell<u32>,
    /// When old rows were last pruned.
    pruned_ms: Cell<i64>,
    /// Per outbox message: rounds in which the queue refused it while others went through.
    refusals: RefCell<std::collections::HashMap<i64, u32>>,
    /// Local development only: queue sends fail until then (ms), to show an outage loses nothing.
    dev_outage_until: Cell<i64>,
    /// Local development only: admissions fail until then (ms), to show what senders are told.
    dev_admission_outage_until: Cell<i64>,
}

impl DurableObject for AdmissionLedger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        let ledger = Self {
            state,
            env,
            sql,
            book: RefCell::new(AdmissionBook::default()),
            book_loaded: Cell::new(false),
            alarm_pending: Cell::new(false),
            failed_sends: Cell::new(0),
            pruned_ms: Cell::new(0),
            refusals: RefCell::default(),
            dev_outage_until: Cell::new(0),
            dev_admission_outage_until: Cell::new(0),
        };
        // A failure is logged; the next admission or alarm tries again.
        let _ = ledger.load();
        ledger
    }

    /// The ledger answers Workers RPC only (its methods below: `admit` and the reads).
    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::error("the admission ledger answers RPC calls only", 404)
    }

    /// Drains the outbox to the queue.
    async fn alarm(&self) -> Result<Response> {
        if self.load().is_err() {
            // The outbox is in storage, unread: try again later.
            self.schedule(Duration::from_millis(admission::send_retry_delay_ms(1)))
                .await?;
            return Response::empty();
        }
        self.alarm_pending.set(true);
        let drained = self.drain().await;
        self.alarm_pending.set(false);
        match drained {
            Ok(()) => self.failed_sends.set(0),
            Err(e) => {
                let failures = self.failed_sends.get().saturating_add(1);
                self.failed_sends.set(failures);
                log::error(
                    "admission ledger: sending to the queue failed; will retry",
                    &[
                        ("unsent", &self.book.borrow().unsent().to_string()),
                        ("attempt", &failures.to_string()),
                        ("error", &e.to_string()),
                    ],
                );
            }
        }
        if self.book.borrow().unsent() > 0 {
            let delay = admission::send_retry_delay_ms(self.failed_sends.get());
            self.schedule(Duration::from_millis(delay)).await?;
        }
        Response::empty()
    }
}

/// The ledger's RPC methods, served through the class in `src/entry.mjs` (RPC needs a class that
/// extends `DurableObject`, which worker-build's export is not). Arguments are plain strings and
/// numbers; answers are JSON text, parsed once on the gateway's side.
#[wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures)]
impl AdmissionLedger {
    /// Admits one job (its [`AdmitRequest`]'s fields and its message's size in bytes, as
    /// arguments: nothing to parse here) and answers its [`AdmitOutcome`] as JSON: at once, or,
    /// when the admission sets the alarm, as a promise settled once the alarm is set (a failure
    /// fails the admission; `src/entry.mjs` then calls [`Self::alarm_not_set`]). The runtime holds
    /// the answer until the job's row is committed (the output gate covers RPC answers as it covers
    /// responses). Not `async`: an admission has nothing else to wait for, and an async method
    /// costs each call a task and a microtask.
    ///
    /// The strings stay the runtime's: only the id and the rate key are copied into wasm memory
    /// (the book keeps them); the message and the record go from the arguments to SQL as they came.
    pub fn admit(
        &self,
        id: JsValue,
        rate_key: JsValue,
        jobs_per_hour: u32,
        message: JsValue,
        message_bytes: u32,
        record: JsValue,
    ) -> std::result::Result<JsValue, JsValue> {
        let (Some(id_text), Some(rate_key_text)) = (id.as_string(), rate_key.as_string()) else {
            return Err(JsValue::from_str(
                "admit: the job id and the rate key must be strings",
            ));
        };
        if !message.is_string() || !record.is_string() {
            return Err(JsValue::from_str(
                "admit: the message and the record must be strings",
            ));
        }
        let job = Candidate {
            id: &id_text,
            rate_key: &rate_key_text,
            jobs_per_hour,
            message_bytes: message_bytes as usize,
        };
        let outcome = self
            .admit_one(&job, [id, rate_key, record, message])
            .map_err(JsValue::from)?;
        let answer = serde_json::to_string(&outcome)
            .map(|json| JsValue::from_str(&json))
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        // After failed sends the alarm may be minutes away: a new message is a reason to try soon,
        // and tells an outage (it fails too) from a lone message the queue refuses (it goes through).
        if outcome == AdmitOutcome::Admitted
            && (!self.alarm_pending.get() || self.failed_sends.get() > 0)
        {
            let set = self.start_alarm(FLUSH_DELAY)?;
            return Ok(answer_after(&set, &answer).into());
        }
        Ok(answer)
    }

    /// The alarm an admission was setting could not be set (called by `src/entry.mjs`): the next
    /// admission sets it.
    #[wasm_bindgen(js_name = alarmNotSet)]
    pub fn alarm_not_set(&self) {
        self.alarm_pending.set(false);
    }

    /// The `queued` record of an admitted job, if the ledger still holds it.
    pub fn job(&self, id: String) -> std::result::Result<Option<String>, JsValue> {
        // As admissions do: a start-up that could not read storage is tried again here, so the
        // table exists (or the failure is the one logged) before it is queried.
        self.load()?;
        let rows: Vec<RecordRow> = self
            .sql
            .exec(
                "SELECT record FROM admissions WHERE id = ?",
                vec![SqlStorageValue::from(id)],
            )?
            .to_array()?;
        Ok(rows.into_iter().next().map(|row| row.record))
    }

    /// The messages set aside (the queue kept refusing them), newest first, as a JSON array of
    /// `{id, error, at_ms, bytes}`.
    #[wasm_bindgen(js_name = setAside)]
    pub fn set_aside_list(&self, limit: u32) -> std::result::Result<String, JsValue> {
        self.load()?;
        #[derive(Deserialize, serde::Serialize)]
        struct Row {
            id: String,
            error: String,
            at_ms: i64,
            bytes: i64,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT id, error, at_ms, length(message) AS bytes FROM set_aside ORDER BY at_ms DESC LIMIT ?",
                vec![SqlStorageValue::Integer(i64::from(limit))],
            )?
            .to_array()?;
        serde_json::to_string(&rows).map_err(|e| JsValue::from_str(&e.to_string()))
    }

    /// Local development only (the gateway's dev routes check `BUGBOT_DEV_ENDPOINTS`): queue sends
    /// fail for `ms` milliseconds.
    #[wasm_bindgen(js_name = devQueueOutage)]
    pub fn dev_queue_outage(&self, ms: u32) {
        self.dev_outage_until.set(now_ms() + i64::from(ms));
    }

    /// Local development only: admissions fail for `ms` milliseconds.
    #[wasm_bindgen(js_name = devLedgerOutage)]
    pub fn dev_ledger_outage(&self, ms: u32) {
        self.dev_admission_outage_until
            .set(now_ms() + i64::from(ms));
    }

    /// Local development only: puts a message the queue refuses (over its 128 KB limit) in the
    /// outbox, as job `id`.
    #[wasm_bindgen(js_name = devPoison)]
    pub async fn dev_poison(&self, id: String) -> std::result::Result<(), JsValue> {
        self.load()?;
        let seq = self.book.borrow().next_seq();
        let message =
            serde_json::json!({ "v": 1, "id": id, "padding": "x".repeat(140_000) }).to_string();
        let job = Candidate {
            id: &id,
            rate_key: "dev:poison",
            jobs_per_hour: u32::MAX,
            message_bytes: message.len(),
        };
        self.sql.exec(
            INSERT_ADMISSION,
            vec![
                SqlStorageValue::Integer(seq),
                SqlStorageValue::from(id.as_str()),
                SqlStorageValue::from(job.rate_key),
                SqlStorageValue::Integer(now_ms()),
                SqlStorageValue::from("{}"),
                SqlStorageValue::from(message),
            ],
        )?;
        self.book.borrow_mut().record(&job, seq, now_ms());
        if !self.alarm_pending.get() {
            self.schedule(FLUSH_DELAY).await?;
        }
        Ok(())
    }

    /// The records of the newest `limit` admissions, newest first, as a JSON array.
    #[wasm_bindgen(js_name = recentJobs)]
    pub fn recent_jobs(&self, limit: u32) -> std::result::Result<String, JsValue> {
        self.load()?;
        let rows: Vec<RecordRow> = self
            .sql
            .exec(
                "SELECT record FROM admissions ORDER BY seq DESC LIMIT ?",
                vec![SqlStorageValue::Integer(i64::from(limit))],
            )?
            .to_array()?;
        Ok(json_array(rows.into_iter().map(|r| r.record)))
    }
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

/// An outbox row as the drain reads it: the message stays a JavaScript string (it is parsed by the
/// runtime's `JSON.parse` and sent from there, never copied into wasm memory).
#[derive(Deserialize)]
struct OutboxRow {
    seq: i64,
    #[serde(with = "serde_wasm_bindgen::preserve")]
    message: JsValue,
}

/// Stores one admission: its position, id, rate key, time, `queued` record and queue message.
const INSERT_ADMISSION: &str = "INSERT INTO admissions (seq, id, rate_key, admitted_ms, record, message) \
     VALUES (?, ?, ?, ?, ?, ?)";

impl AdmissionLedger {
    /// Rebuilds the book from storage, unless it was already.
    fn load(&self) -> Result<()> {
        if self.book_loaded.get() {
            return Ok(());
        }
        let sql = &self.sql;
        let now = now_ms();
        let rows = sql.exec(SCHEMA, None).and_then(|_| {
            sql.exec(
                "SELECT seq, id, rate_key, admitted_ms, length(CAST(message AS BLOB)) AS message_bytes \
                 FROM admissions WHERE admitted_ms > ? OR message IS NOT NULL",
                vec![SqlStorageValue::Integer(
                    now - admission::RETENTION_MS as i64,
                )],
            )?
            .to_array::<StoredAdmission>()
        });
        match rows {
            Ok(rows) => {
                *self.book.borrow_mut() = AdmissionBook::restore(rows, now);
                self.book_loaded.set(true);
                Ok(())
            }
            Err(e) => {
                log::error("admission ledger: loading", &[("error", &e.to_string())]);
                Err(worker::Error::RustError(
                    "the admission ledger could not read its storage".into(),
                ))
            }
        }
    }

    /// Decides, stores the admitted job's row (one statement: the row is there or not) and notes
    /// it in the book. `values` are the row's strings as the runtime holds them: id, rate key,
    /// record, message.
    fn admit_one(&self, job: &Candidate<'_>, values: [JsValue; 4]) -> Result<AdmitOutcome> {
        if now_ms() < self.dev_admission_outage_until.get() {
            return Err(worker::Error::RustError(
                "the admission ledger is down (a local outage asked for by POST /v1/dev/ledger-outage)"
                    .into(),
            ));
        }
        self.load()?;
        let now = now_ms();
        let (outcome, seq) = {
            let book = self.book.borrow();
            (book.decide(job, now), book.next_seq())
        };
        if outcome != AdmitOutcome::Admitted {
            return Ok(outcome);
        }
        let [id, rate_key, record, message] = values;
        self.sql.exec_raw(
            INSERT_ADMISSION,
            vec![
                JsValue::from_f64(seq as f64),
                id,
                rate_key,
                JsValue::from_f64(now as f64),
                record,
                message,
            ],
        )?;
        self.book.borrow_mut().record(job, seq, now);
        if let Err(e) = self.prune_now_and_then(now) {
            // The job is recorded; old rows wait for the next pruning.
            log::error("admission ledger: pruning", &[("error", &e.to_string())]);
        }
        Ok(outcome)
    }

    /// Sets the alarm `delay` from now and marks it pending; the promise settles once it is set
    /// (whoever awaits it clears the mark if it fails, as [`Self::schedule`] does).
    fn start_alarm(&self, delay: Duration) -> Result<js_sys::Promise> {
        self.alarm_pending.set(true);
        let at = Date::from(DateInit::Millis(
            (now_ms() + delay.as_millis() as i64) as u64,
        ));
        let set = self
            .state
            .storage()
            .as_raw()
            .set_alarm(at.into(), JsValue::NULL.into());
        if set.is_err() {
            self.alarm_pending.set(false);
        }
        Ok(set?)
    }

    async fn schedule(&self, delay: Duration) -> Result<()> {
        let set = JsFuture::from(self.start_alarm(delay)?).await;
        if set.is_err() {
            self.alarm_pending.set(false);
        }
        set.map(|_| ()).map_err(worker::Error::from)
    }

    /// Sends the outbox in batches, oldest first: the first batch, then more while a full batch
    /// waits (a backlog); a smaller rest waits for the next alarm, [`FLUSH_DELAY`] later. Each
    /// batch's rows lose their message once the queue has it. One log line per batch names its jobs
    /// (a line per admission would cost more than the admission, locally).
    ///
    /// A batch the queue refuses is sent again one message at a time, so one bad message cannot
    /// hold up the jobs behind it: a message refused while others go through is set aside after
    /// [`admission::POISON_AFTER`] such rounds (and listed with the dead jobs); when nothing goes
    /// through, it is an outage — the error returns and the alarm retries with backoff.
    async fn drain(&self) -> Result<()> {
        loop {
            let batch: Vec<Outgoing> = self.book.borrow().next_batch().to_vec();
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(());
            };
            let (first, last) = (first.seq, last.seq);
            if let Some(o) = batch
                .iter()
                .find(|o| o.bytes > admission::MAX_MESSAGE_BYTES)
            {
                let why = format!(
                    "the job message is {} bytes, over the queue's limit of {}",
                    o.bytes,
                    admission::MAX_MESSAGE_BYTES
                );
                self.set_aside(o.seq, &why)?;
                continue;
            }
            // The batch's messages, read from storage as the runtime's strings and parsed by its
            // `JSON.parse`: no message is copied into wasm memory. The values are shared handles,
            // so a refused batch is sent again one by one without reading or parsing twice.
            let rows: Vec<OutboxRow> = self
                .sql
                .exec(
                    "SELECT seq, message FROM admissions \
                     WHERE seq BETWEEN ? AND ? AND message IS NOT NULL ORDER BY seq",
                    vec![
                        SqlStorageValue::Integer(first),
                        SqlStorageValue::Integer(last),
                    ],
                )?
                .to_array()?;
            let mut pending = Vec::with_capacity(rows.len());
            let mut unreadable = None;
            for row in rows {
                let Ok(at) = batch.binary_search_by_key(&row.seq, |o| o.seq) else {
                    continue;
                };
                match parse_json(&row.message) {
                    Ok(body) => pending.push(Pending {
                        seq: row.seq,
                        id: batch[at].id.clone(),
                        body,
                    }),
                    Err(_) => {
                        unreadable = Some(row.seq);
                        break;
                    }
                }
            }
            if let Some(seq) = unreadable {
                self.set_aside(seq, "the job message is not readable JSON")?;
                continue;
            }
            if pending.len() < batch.len() {
                // The book counted messages that storage no longer holds (nothing should clear one
                // but the ledger itself): storage is the truth; they are not sent.
                let read: Vec<i64> = pending.iter().map(|p| p.seq).collect();
                let mut book = self.book.borrow_mut();
                for o in batch.iter().filter(|o| !read.contains(&o.seq)) {
                    book.take(o.seq);
                    log::error(
                        "admission ledger: an outbox message was missing from storage",
                        &[("job", &o.id)],
                    );
                }
            }
            if pending.is_empty() {
                continue;
            }
            match self
                .send(pending.iter().map(Pending::message).collect())
                .await
            {
                Ok(()) => {
                    self.sql.exec(
                        "UPDATE admissions SET message = NULL WHERE seq BETWEEN ? AND ?",
                        vec![
                            SqlStorageValue::Integer(first),
                            SqlStorageValue::Integer(last),
                        ],
                    )?;
                    self.book.borrow_mut().sent_through(last);
                    let ids: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
                    log::info("jobs on the queue", &[("jobs", &ids.join(" "))]);
                }
                Err(batch_error) => self.send_one_by_one(&pending, batch_error).await?,
            }
            // A backlog goes batch after batch; what arrived while this batch was sent waits for
            // the next alarm (set by `alarm`), so that it travels as one batch.
            if !self.book.borrow().a_full_batch_waits() {
                return Ok(());
            }
        }
    }

    /// Sends each message of a refused batch alone (see [`Self::drain`]).
    async fn send_one_by_one(&self, batch: &[Pending], batch_error: worker::Error) -> Result<()> {
        let mut refused = Vec::new();
        let mut sent = 0;
        for p in batch {
            match self.send(vec![p.message()]).await {
                Ok(()) => {
                    sent += 1;
                    self.sql.exec(
                        "UPDATE admissions SET message = NULL WHERE seq = ?",
                        vec![SqlStorageValue::Integer(p.seq)],
                    )?;
                    self.book.borrow_mut().take(p.seq);
                    self.refusals.borrow_mut().remove(&p.seq);
                    log::info("jobs on the queue", &[("jobs", &p.id)]);
                }
                Err(e) => refused.push((p.seq, e)),
            }
        }
        if sent == 0 {
            return Err(batch_error);
        }
        for (seq, e) in refused {
            let before = self.refusals.borrow().get(&seq).copied().unwrap_or(0);
            let (verdict, count) = admission::judge_refusal(before, true);
            self.refusals.borrow_mut().insert(seq, count);
            if verdict == admission::Refused::SetAside {
                self.set_aside(seq, &format!("the queue refused it {count} times: {e}"))?;
            }
        }
        Ok(())
    }

    async fn send(&self, bodies: Vec<worker::SendMessage<JsValue>>) -> Result<()> {
        if now_ms() < self.dev_outage_until.get() {
            return Err(worker::Error::RustError(
                "the queue is down (a local outage asked for by POST /v1/dev/queue-outage)".into(),
            ));
        }
        self.env
            .queue(config::QUEUE_BINDING)?
            .send_raw_batch(bodies)
            .await
    }

    /// Moves a message out of the outbox into `set_aside` (listed with the dead jobs), in storage
    /// (the message is not read). It is one of the current batch's (the front of the outbox).
    fn set_aside(&self, seq: i64, why: &str) -> Result<()> {
        let found = self
            .book
            .borrow()
            .next_batch()
            .iter()
            .find(|o| o.seq == seq)
            .cloned();
        let Some(o) = found else {
            return Ok(());
        };
        let sql = &self.sql;
        sql.exec(
            "INSERT OR REPLACE INTO set_aside (seq, id, message, error, at_ms) \
             SELECT seq, id, message, ?, ? FROM admissions WHERE seq = ? AND message IS NOT NULL",
            vec![
                SqlStorageValue::from(why),
                SqlStorageValue::Integer(now_ms()),
                SqlStorageValue::Integer(seq),
            ],
        )?;
        sql.exec(
            "UPDATE admissions SET message = NULL WHERE seq = ?",
            vec![SqlStorageValue::Integer(seq)],
        )?;
        self.book.borrow_mut().take(seq);
        self.refusals.borrow_mut().remove(&seq);
        log::error(
            "admission ledger: a job message was set aside",
            &[("job", &o.id), ("error", why)],
        );
        Ok(())
    }

    /// Now and then forgets admissions older than the retention (dedupe and the `queued` record
    /// end there), in storage and in memory; unsent ones stay.
    fn prune_now_and_then(&self, now: i64) -> Result<()> {
        if now - self.pruned_ms.get() <= PRUNE_EVERY_MS {
            return Ok(());
        }
        self.pruned_ms.set(now);
        self.sql.exec(
            "DELETE FROM admissions WHERE admitted_ms < ? AND message IS NULL",
            vec![SqlStorageValue::Integer(
                now - admission::RETENTION_MS as i64,
            )],
        )?;
        self.book.borrow_mut().prune(now);
        Ok(())
    }
}

fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// An outbox message on its way to the queue: its admission's position, its job, and its body as
/// the runtime parsed it (a shared handle, cheap to send again).
struct Pending {
    seq: i64,
    id: String,
    body: JsValue,
}

impl Pending {
    fn message(&self) -> worker::SendMessage<JsValue> {
        RawMessageBuilder::new(self.body.clone())
            .build_with_content_type(worker::QueueContentType::Json)
    }
}

/// A JSON array of already-rendered JSON values.
fn json_array(items: impl Iterator<Item = String>) -> String {
    let mut body = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&item);
    }
    body.push(']');
    body
}

/// Asks the ledger to admit one job.
pub async fn admit(
    env: &Env,
    request: &AdmitRequest,
) -> std::result::Result<AdmitOutcome, GatewayError> {
    let job = request.candidate();
    let outcome = answer(stub(env)?.admit(
        job.id,
        job.rate_key,
        job.jobs_per_hour,
        &request.message,
        u32::try_from(job.message_bytes).unwrap_or(u32::MAX),
        &request.record,
    ))
    .await?;
    parse(outcome.as_string())
}

/// The ledger's `queued` record of a job (JSON), if it holds one.
pub async fn job(env: &Env, id: &str) -> std::result::Result<Option<String>, GatewayError> {
    Ok(answer(stub(env)?.job(id)).await?.as_string())
}

/// The ledger's records of the newest `limit` admissions, newest first.
pub async fn recent_jobs<T: serde::de::DeserializeOwned>(
    env: &Env,
    limit: usize,
) -> std::result::Result<T, GatewayError> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    parse(answer(stub(env)?.recent_jobs(limit)).await?.as_string())
}

/// The messages the ledger set aside (the queue kept refusing them), newest first.
pub async fn set_aside(
    env: &Env,
    limit: usize,
) -> std::result::Result<Vec<serde_json::Value>, GatewayError> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    parse(answer(stub(env)?.set_aside(limit)).await?.as_string())
}

/// Local development only: the ledger's queue sends fail for `ms` milliseconds.
pub async fn dev_queue_outage(env: &Env, ms: u32) -> std::result::Result<(), GatewayError> {
    answer(stub(env)?.dev_queue_outage(ms)).await?;
    Ok(())
}

/// Local development only: admissions fail for `ms` milliseconds.
pub async fn dev_ledger_outage(env: &Env, ms: u32) -> std::result::Result<(), GatewayError> {
    answer(stub(env)?.dev_ledger_outage(ms)).await?;
    Ok(())
}

/// Local development only: a message the queue refuses, in the outbox as job `id`.
pub async fn dev_poison(env: &Env, id: &str) -> std::result::Result<(), GatewayError> {
    answer(stub(env)?.dev_poison(id)).await?;
    Ok(())
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's `JSON.parse`, on a string it holds.
    #[wasm_bindgen(catch, js_namespace = JSON, js_name = parse)]
    fn parse_json(text: &JsValue) -> std::result::Result<JsValue, JsValue>;
}

#[wasm_bindgen(inline_js = "export function answer_after(promise, answer) {
  return promise.then(() => answer);
}")]
extern "C" {
    /// `answer`, once `promise` is fulfilled.
    fn answer_after(promise: &js_sys::Promise, answer: &JsValue) -> js_sys::Promise;
}

#[wasm_bindgen]
extern "C" {
    /// The ledger's namespace binding, for the two calls made here.
    type LedgerNamespace;

    #[wasm_bindgen(method, catch, js_name = idFromName)]
    fn id_from_name(this: &LedgerNamespace, name: &str) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn get(this: &LedgerNamespace, id: &JsValue) -> std::result::Result<LedgerRpc, JsValue>;

    /// The one ledger instance's stub, seen as its RPC methods (a Workers RPC call sends no
    /// Request, Response or body stream, which a `fetch` to the object would).
    type LedgerRpc;

    #[wasm_bindgen(method, catch)]
    fn admit(
        this: &LedgerRpc,
        id: &str,
        rate_key: &str,
        jobs_per_hour: u32,
        message: &str,
        message_bytes: u32,
        record: &str,
    ) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn job(this: &LedgerRpc, id: &str) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = recentJobs)]
    fn recent_jobs(this: &LedgerRpc, limit: u32) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = setAside)]
    fn set_aside(this: &LedgerRpc, limit: u32) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = devQueueOutage)]
    fn dev_queue_outage(this: &LedgerRpc, ms: u32) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = devLedgerOutage)]
    fn dev_ledger_outage(this: &LedgerRpc, ms: u32) -> std::result::Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = devPoison)]
    fn dev_poison(this: &LedgerRpc, id: &str) -> std::result::Result<JsValue, JsValue>;
}

thread_local! {
    /// The ledger's namespace binding and its one instance's id, looked up once per isolate (the
    /// binding and the id may serve any request; a stub may not, so one is made per call).
    static INSTANCE_ID: RefCell<Option<(LedgerNamespace, JsValue)>> = const { RefCell::new(None) };
}

fn stub(env: &Env) -> Result<LedgerRpc> {
    INSTANCE_ID.with_borrow_mut(|known| {
        let (namespace, id) = match known {
            Some(known) => known,
            None => {
                let binding = js_sys::Reflect::get(env, &JsValue::from_str(BINDING))?;
                if binding.is_undefined() {
                    return Err(worker::Error::RustError(format!(
                        "the {BINDING} binding is missing"
                    )));
                }
                let namespace: LedgerNamespace = binding.unchecked_into();
                let id = namespace.id_from_name(INSTANCE)?;
                known.insert((namespace, id))
            }
        };
        Ok(namespace.get(id)?)
    })
}

/// Awaits an RPC call's answer (the call's result is a thenable, not a `Promise`), through
/// `Settled`: on the webhooks' path the answer resumes the request at once (any other executor's
/// task is woken as usual).
async fn answer(call: std::result::Result<JsValue, JsValue>) -> Result<JsValue> {
    Ok(crate::task::Settled::new(&js_sys::Promise::resolve(&call?)).await?)
}

fn parse<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> std::result::Result<T, GatewayError> {
    let text = text
        .ok_or_else(|| GatewayError::Unavailable("the admission ledger answered no text".into()))?;
    serde_json::from_str(&text)
        .map_err(|e| GatewayError::Unavailable(format!("the admission ledger's answer: {e}")))
}
