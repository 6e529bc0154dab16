//! Runs known by their id (the job id): at most one agent run per job. A request for a run that
//! is going attaches to it — it gets the events so far, then the rest — and a request for a run
//! that finished lately gets its events, result included, without running anything again. A run
//! whose callers all went away is given a grace period for one to come back (a redelivered job)
//! before it is stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Finished runs are kept this long, for a redelivery to collect the result.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// Events kept per run (a run emits a handful plus one per turn and heartbeat).
const MAX_EVENTS: usize = 2000;

/// One run's events, shared by its task and every caller following it.
#[derive(Debug)]
pub struct Hub {
    events: Mutex<Vec<String>>,
    live: broadcast::Sender<(usize, String)>,
    followers: watch::Sender<usize>,
    finished: Mutex<Option<Instant>>,
    /// Why the run was asked to stop, once it was.
    stop: watch::Sender<Option<String>>,
    /// The run is pushing: past this point a stop comes too late (a push is not cut off halfway).
    committed: std::sync::atomic::AtomicBool,
}

impl Hub {
    fn new() -> Arc<Self> {
        let (live, _) = broadcast::channel(256);
        let (followers, _) = watch::channel(0);
        let (stop, _) = watch::channel(None);
        Arc::new(Self {
            events: Mutex::default(),
            live,
            followers,
            finished: Mutex::default(),
            stop,
            committed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Resolves with the reason once the run is asked to stop, unless it is already pushing.
    pub async fn stopped(&self) -> String {
        let mut stop = self.stop.subscribe();
        loop {
            let reason = stop.borrow_and_update().clone();
            if let Some(reason) = reason
                && !self.committed.load(std::sync::atomic::Ordering::SeqCst)
            {
                return reason;
            }
            if stop.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Marks the point after which the run is no longer stopped (it is pushing). False when a stop
    /// was asked for first: then the run must not push.
    pub fn commit(&self) -> bool {
        self.committed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.borrow().is_none()
    }

    /// Records and broadcasts one event line.
    pub fn push(&self, line: String) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() < MAX_EVENTS {
            let n = events.len();
            events.push(line.clone());
            let _ = self.live.send((n, line));
        }
    }

    /// Marks the run finished (its last event, `done`, is pushed).
    pub fn finish(&self) {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// When the run finished, if it has.
    fn finished_at(&self) -> Option<Instant> {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once nobody has followed the run for `grace`.
    pub async fn abandoned(&self, grace: Duration) {
        let mut count = self.followers.subscribe();
        loop {
            while *count.borrow_and_update() > 0 {
                if count.changed().await.is_err() {
                    return;
                }
            }
            match tokio::time::timeout(grace, count.changed()).await {
                Err(_) => return,     // nobody came back in time
                Ok(Err(_)) => return, // the hub is gone
                Ok(Ok(())) => {}      // someone attached (or left): look again
            }
        }
    }

    /// A stream of the run's lines: every event so far, then the rest until the run finishes.
    /// While the stream lives it counts as a follower.
    pub fn follow(self: &Arc<Self>) -> impl futures_util::Stream<Item = String> + Send + 'static {
        let mut live = self.live.subscribe();
        let (backlog, mut next) = {
            let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            (events.clone(), events.len())
        };
        let finished = self.finished_at().is_some();
        let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
        let producer = tokio::spawn(async move {
            if finished {
                return;
            }
            loop {
                match live.recv().await {
                    Ok((n, line)) if n >= next => {
                        next = n + 1;
                        let done = line.contains("\"event\":\"done\"");
                        if tx.send(line).await.is_err() || done {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        // The follower count and the producer live as long as the stream does.
        let state = (rx, Following::new(self.clone(), producer));
        let rest = futures_util::stream::unfold(state, |(mut rx, following)| async move {
            let line = rx.recv().await?;
            Some((line, (rx, following)))
        });
        futures_util::StreamExt::chain(futures_util::stream::iter(backlog), rest)
    }
}

/// Counts a follower while it lives, and stops its producer when it goes.
struct Following {
    hub: Arc<Hub>,
    producer: tokio::task::JoinHandle<()>,
}

impl Following {
    fn new(hub: Arc<Hub>, producer: tokio::task::JoinHandle<()>) -> Self {
        hub.followers.send_modify(|n| *n += 1);
        Self { hub, producer }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.producer.abort();
        self.hub.followers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What a stop found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    /// The run is going: it is being stopped.
    Running,
    /// The run had already finished (or is pushing): nothing to stop.
    Finished,
    /// No such run yet: when it is asked for, it ends at once, stopped.
    BeforeStart,
}

/// What a request for a run found.
#[derive(Debug)]
pub enum Claim {
    /// No such run: start it (the hub to push to).
    Start(Arc<Hub>),
    /// It is going, or finished lately: follow it.
    Follow(Arc<Hub>),
}

/// The runs of this executor.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    runs: Arc<Mutex<HashMap<String, Arc<Hub>>>>,
}

impl Runs {
    /// The run known as `id`, or a new one (atomically: two requests at once get one run).
    pub fn claim(&self, id: &str) -> Claim {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.retain(|_, hub| {
            hub.finished_at()
                .is_none_or(|at| at.elapsed() < KEEP_FINISHED)
        });
        if let Some(hub) = runs.get(id) {
            return Claim::Follow(hub.clone());
        }
        let hub = Hub::new();
        runs.insert(id.to_owned(), hub.clone());
        Claim::Start(hub)
    }

    /// Stops run `id` for `reason`. A run not started yet is recorded as stopped, so that the
    /// request that would start it gets the stopped result instead (`stopped_line`).
    pub fn stop(&self, id: &str, reason: &str, stopped_line: impl FnOnce() -> String) -> Stopping {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.get(id) {
            Some(hub)
                if hub.finished_at().is_some()
                    || hub.committed.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                Stopping::Finished
            }
            Some(hub) => {
                hub.stop.send_replace(Some(reason.to_owned()));
                Stopping::Running
            }
            None => {
                let hub = Hub::new();
                hub.push(stopped_line());
                hub.finish();
                runs.insert(id.to_owned(), hub);
                Stopping::BeforeStart
            }
        }
    }

    /// Forgets a run that ended without a result (stopped: nobody followed it), so a later
    /// request starts it afresh.
    pub fn forget(&self, id: &str) {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn a_second_request_follows_the_first_run_from_its_start() {
        let runs = Runs::default();
        let Claim::Start(hub) = runs.claim("job-1") else {
            panic!("a new run")
        };
        hub.push("{\"event\":\"cloning\"}".into());
        let Claim::Follow(same) = runs.claim("job-1") else {
            panic!("the same run")
        };
        let follower = same.follow();
        hub.push("{\"event\":\"running\"}".into());
        hub.push("{\"event\":\"done\"}".into());
        hub.finish();
        let lines: Vec<String> = follower.collect().await;
        assert_eq!(
            lines,
            vec![
                "{\"event\":\"cloning\"}",
                "{\"event\":\"running\"}",
                "{\"event\":\"done\"}"
            ]
        );
        // A finished run is collected, not run again.
        let Claim::Follow(again) = runs.claim("job-1") else {
            panic!("kept")
        };
        assert_eq!(again.follow().collect::<Vec<_>>().await.len(), 3);
    }

    #[tokio::test]
    async fn a_stop_ends_a_run_or_waits_for_it_and_never_cuts_a_push() {
        let runs = Runs::default();
        let Claim::Start(hub) = runs.claim("job-3") else {
            panic!()
        };
        let waiting = tokio::spawn({
            let hub = hub.clone();
            async move { hub.stopped().await }
        });
        assert_eq!(
            runs.stop("job-3", "stopped by jane", String::new),
            Stopping::Running
        );
        assert_eq!(waiting.await.unwrap(), "stopped by jane");
        assert!(!hub.commit(), "a stopped run must not push");

        // Asked before the run exists: the run, when asked for, is already over.
        let line = || "{\"event\":\"done\"}\n".to_owned();
        assert_eq!(
            runs.stop("job-4", "stopped by bob", line),
            Stopping::BeforeStart
        );
        let Claim::Follow(hub) = runs.claim("job-4") else {
            panic!("the stopped run is followed, not started")
        };
        assert_eq!(hub.follow().collect::<Vec<_>>().await.len(), 1);

        // Pushing: too late to stop.
        let Claim::Start(hub) = runs.claim("job-5") else {
            panic!()
        };
        assert!(hub.commit());
        assert_eq!(runs.stop("job-5", "x", String::new), Stopping::Finished);
        let late = tokio::time::timeout(Duration::from_millis(100), hub.stopped()).await;
        assert!(late.is_err(), "a pushing run is not stopped");
    }

    #[tokio::test]
    async fn a_run_nobody_follows_is_abandoned_after_the_grace_period() {
        let runs = Runs::default();
        let Claim::Start(hub) = runs.claim("job-2") else {
            panic!()
        };
        let follower = hub.follow();
        let grace = Duration::from_millis(100);
        let waiting = tokio::spawn({
            let hub = hub.clone();
            async move { hub.abandoned(grace).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "followed: not abandoned");
        drop(follower);
        // A follower that comes back within the grace period keeps it going.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let back = hub.follow();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "someone came back");
        drop(back);
        tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("abandoned once nobody came back")
            .unwrap();
        runs.forget("job-2");
        assert!(matches!(runs.claim("job-2"), Claim::Start(_)));
    }
}
