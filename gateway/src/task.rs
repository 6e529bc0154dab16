//! The fetch handler's future, driven by the gateway itself rather than by wasm-bindgen-futures.
//!
//! wasm-bindgen-futures runs every poll from a microtask of its own: the first poll of the handler
//! waits for one, and each awaited promise's settling queues another (a `queueMicrotask` call,
//! then a call back into wasm), and each `JsFuture` makes two closures. For a signed Discord PING
//! that was about a tenth of the Worker's CPU time (docs/benchmarks.md). Here:
//! - the first poll runs at once, in the call that delivered the request (an answer that needs no
//!   I/O is returned as it is);
//! - a promise awaited through [`Settled`] stores its outcome and polls the waiting task straight
//!   from its reaction, through one shared callback (no wasm-bindgen closure made per promise);
//! - any other wake (a timer's, whose callback may wake before it records that it fired) polls
//!   from a microtask, as wasm-bindgen-futures does;
//! - a wake during a poll (a future that wakes itself) polls again as soon as that poll returns.
//!
//! Each poll runs in the reaction of a promise the request itself awaited (or in the microtask
//! its own event queued), so it stays in that request's I/O context; see `admission` for why no
//! request ever wakes another's task.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use worker::js_sys::{Function, Promise};
use worker::wasm_bindgen::{self, JsCast, JsValue, closure::Closure, prelude::wasm_bindgen};

#[wasm_bindgen]
extern "C" {
    /// A JavaScript function, as these bindings use it.
    type Callback;

    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(callback: &Callback);
}

// Two arrow functions per awaited promise, made by JavaScript itself: cheaper than a wasm-bindgen
// closure (a wrapper and a finalizer entry each) or a bound function. (A trap while polling from
// them is recovered from as anywhere else: wasm-bindgen's glue starts a fresh instance at the next
// call; the e2e test `a_panic_reaches_the_structured_logs_and_the_workers_recover` shows it.)
#[wasm_bindgen(inline_js = "export function settle_into(promise, slot, settle) {
  promise.then((value) => settle(slot, true, value), (reason) => settle(slot, false, reason));
}")]
extern "C" {
    fn settle_into(promise: &Promise, slot: u32, settle: &Callback);
}

type Outcome = Result<JsValue, JsValue>;

thread_local! {
    /// The tasks not yet ended, by id: a `Waker` must be `Send`, so it holds the id only.
    static TASKS: RefCell<HashMap<u64, Rc<Task>>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
    /// Whether a task is being polled now (then a wake is kept for later).
    static POLLING: Cell<bool> = const { Cell::new(false) };
    /// Tasks woken while a poll ran, in the order they were woken.
    static NESTED: RefCell<VecDeque<Rc<Task>>> = const { RefCell::new(VecDeque::new()) };
    /// Tasks to poll from the next microtask, and whether it is queued.
    static DEFERRED: RefCell<VecDeque<Rc<Task>>> = const { RefCell::new(VecDeque::new()) };
    static DRAIN_QUEUED: Cell<bool> = const { Cell::new(false) };
    static DRAIN: Closure<dyn FnMut()> = Closure::new(drain_deferred);
    /// Set while a settled promise wakes its task: that wake may poll at once.
    static SETTLING: Cell<bool> = const { Cell::new(false) };
    /// The promises awaited through `Settled`, by slot.
    static SLOTS: RefCell<HashMap<u32, Rc<SettleState>>> = RefCell::new(HashMap::new());
    static NEXT_SLOT: Cell<u32> = const { Cell::new(0) };
    /// What every awaited promise calls when it settles: its slot, whether it was fulfilled, and
    /// the value or the reason.
    static SETTLE: Closure<dyn FnMut(u32, bool, JsValue)> =
        Closure::new(|slot, fulfilled, value| settle(slot, if fulfilled { Ok(value) } else { Err(value) }));
}

/// A handler's future and where its outcome goes. A task whose promises never settle (a request
/// the runtime gave up on) stays, as it does under wasm-bindgen-futures (whose tasks and wakers
/// hold each other); the isolate's end frees it.
struct Task {
    id: u64,
    waker: Waker,
    future: RefCell<Option<Pin<Box<dyn Future<Output = Outcome>>>>>,
    /// The answer's settle functions, once the future has had to wait.
    settle: RefCell<Option<(Function, Function)>>,
    /// The outcome, when it came before there was a promise to settle.
    outcome: RefCell<Option<Outcome>>,
    /// In `NESTED` or `DEFERRED` already.
    queued: Cell<bool>,
}

/// A task's waker.
struct TaskId(u64);

impl Wake for TaskId {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(task) = TASKS.with(|t| t.borrow().get(&self.0).cloned()) else {
            return;
        };
        if SETTLING.with(|s| s.replace(false)) || POLLING.with(Cell::get) {
            run(&task);
        } else if !task.queued.replace(true) {
            DEFERRED.with(|d| d.borrow_mut().push_back(task));
            if !DRAIN_QUEUED.with(|q| q.replace(true)) {
                DRAIN.with(|drain| queue_microtask(drain.as_ref().unchecked_ref()));
            }
        }
    }
}

/// Runs `future` to its end and gives its answer: the value itself when it completes at once,
/// otherwise a promise of it.
pub fn drive(future: impl Future<Output = Outcome> + 'static) -> JsValue {
    let id = NEXT_ID.with(|n| n.replace(n.get().wrapping_add(1)));
    let task = Rc::new(Task {
        id,
        waker: Waker::from(Arc::new(TaskId(id))),
        future: RefCell::new(Some(Box::pin(future))),
        settle: RefCell::new(None),
        outcome: RefCell::new(None),
        queued: Cell::new(false),
    });
    TASKS.with(|t| t.borrow_mut().insert(id, task.clone()));
    run(&task);
    let outcome = task.outcome.borrow_mut().take();
    match outcome {
        Some(Ok(value)) => value,
        Some(Err(error)) => Promise::reject(&error).into(),
        None => Promise::new(&mut |resolve, reject| {
            *task.settle.borrow_mut() = Some((resolve, reject));
        })
        .into(),
    }
}

/// Polls `task`, then any task woken meanwhile; or, during another poll, keeps it for then.
fn run(task: &Rc<Task>) {
    if POLLING.with(|p| p.replace(true)) {
        if !task.queued.replace(true) {
            NESTED.with(|n| n.borrow_mut().push_back(task.clone()));
        }
        return;
    }
    task.poll();
    poll_nested();
    POLLING.with(|p| p.set(false));
}

fn poll_nested() {
    while let Some(next) = NESTED.with(|n| n.borrow_mut().pop_front()) {
        next.queued.set(false);
        next.poll();
    }
}

/// The microtask that polls the deferred tasks.
fn drain_deferred() {
    DRAIN_QUEUED.with(|q| q.set(false));
    POLLING.with(|p| p.set(true));
    while let Some(next) = DEFERRED.with(|d| d.borrow_mut().pop_front()) {
        next.queued.set(false);
        next.poll();
        poll_nested();
    }
    POLLING.with(|p| p.set(false));
}

impl Task {
    fn poll(&self) {
        let polled = {
            let mut slot = self.future.borrow_mut();
            let Some(future) = slot.as_mut() else {
                return;
            };
            future.as_mut().poll(&mut Context::from_waker(&self.waker))
        };
        if let Poll::Ready(outcome) = polled {
            TASKS.with(|t| t.borrow_mut().remove(&self.id));
            // Dropped outside the borrow: a future's drop may wake.
            let ended = self.future.borrow_mut().take();
            drop(ended);
            self.answer(outcome);
        }
    }

    /// Settles the promise `drive` returned, or keeps the outcome for `drive` to return.
    fn answer(&self, outcome: Outcome) {
        let settle = self.settle.borrow_mut().take();
        let Some((resolve, reject)) = settle else {
            *self.outcome.borrow_mut() = Some(outcome);
            return;
        };
        let _ = match outcome {
            Ok(value) => resolve.call1(&JsValue::UNDEFINED, &value),
            Err(error) => reject.call1(&JsValue::UNDEFINED, &error),
        };
    }
}

/// A promise's outcome, awaited so that its settling polls the waiting task at once (see the
/// module doc). For the promises on the webhooks' path; `JsFuture` elsewhere.
#[derive(Debug)]
pub struct Settled {
    slot: u32,
    state: Rc<SettleState>,
}

#[derive(Debug, Default)]
struct SettleState {
    outcome: RefCell<Option<Outcome>>,
    waker: RefCell<Option<Waker>>,
}

impl Settled {
    pub fn new(promise: &Promise) -> Self {
        let slot = NEXT_SLOT.with(|n| n.replace(n.get().wrapping_add(1)));
        let state = Rc::new(SettleState::default());
        SLOTS.with(|s| s.borrow_mut().insert(slot, state.clone()));
        SETTLE.with(|settle| settle_into(promise, slot, settle.as_ref().unchecked_ref()));
        Self { slot, state }
    }
}

impl Future for Settled {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let Some(outcome) = self.state.outcome.borrow_mut().take() {
            return Poll::Ready(outcome);
        }
        *self.state.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        SLOTS.with(|s| s.borrow_mut().remove(&self.slot));
    }
}

/// A promise awaited through `Settled` has settled: its outcome is stored, then its task woken.
fn settle(slot: u32, outcome: Outcome) {
    let Some(state) = SLOTS.with(|s| s.borrow_mut().remove(&slot)) else {
        return; // no longer awaited
    };
    *state.outcome.borrow_mut() = Some(outcome);
    let waker = state.waker.borrow_mut().take();
    if let Some(waker) = waker {
        SETTLING.with(|s| s.set(true));
        waker.wake();
        // Another executor's waker leaves it set.
        SETTLING.with(|s| s.set(false));
    }
}
