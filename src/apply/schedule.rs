//! The scheduler: the serial part of a plan, then each site's steps with `parallelism` sites at a
//! time; failures and interrupts stop new steps.

use std::time::{Duration, Instant};

use benchform_core::plan::{Plan, Step, StepKind};
use benchform_core::schedule::Phase;

use super::*;

/// Where a step of the plan ended.
#[derive(Debug)]
pub enum StepState {
    NotStarted,
    Finished(Result<Outcome, StepError>),
}

/// Progress callback: a step starts (`None`) or ends (`Some`, with its elapsed time).
pub type Progress<'r> = &'r (dyn Fn(&Step, Option<&Result<Outcome, StepError>>, Duration) + Sync);

/// Run `plan` phase by phase (`benchform_core::schedule`): a step that concerns no single site
/// (build … deploy, refresh-assets) alone; each run of per-site steps site by site, up to
/// `options.parallelism` sites at a time. After a failure no new phase, step or site starts
/// (but a migrated site still leaves maintenance); steps already running finish. Returns each
/// step's state, in plan order.
pub async fn run(a: &Applier<'_>, plan: &Plan, report: Progress<'_>) -> Vec<StepState> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let states: Mutex<Vec<StepState>> = Mutex::new(plan.steps.iter().map(|_| StepState::NotStarted).collect());
    let stop = AtomicBool::new(false);
    let one = |i: usize| {
        let (states, stop) = (&states, &stop);
        async move {
            let s = &plan.steps[i];
            a.forget_last_line(s);
            report(s, None, Duration::ZERO);
            let started = Instant::now();
            let result = tokio::select! {
                r = a.step(s) => r,
                () = a.interrupt.wait() => Err(StepError {
                    // What it was doing may go on in a container. A migrate: nothing may be
                    // restored under it. Anything else (a deploy above all: `compose up` may have
                    // recreated the services) counts as having changed things.
                    touched: s.kind != StepKind::Migrate,
                    ..err(
                        format!(
                            "interrupted ({}) while it ran; a command it started may still run in the backend",
                            a.interrupt.signal().unwrap_or("signal")
                        ),
                        "run apply again: it waits for nothing that still runs and heals the rest",
                    )
                }),
            };
            if s.kind.recreates_containers() {
                // However it ended (an interrupt drops it while compose may go on), the backend
                // container may be another one now.
                a.forget_backend().await;
            }
            report(s, Some(&result), started.elapsed());
            let ok = result.is_ok();
            if let Ok(mut states) = states.lock() {
                states[i] = StepState::Finished(result);
            }
            if !ok {
                stop.store(true, Ordering::SeqCst);
                return false;
            }
            // Test-only crash injection (documented in docs/apply.md): die right after this step,
            // leaving the lock and everything else as a real crash would.
            if std::env::var("BENCHFORM_FAILPOINT").is_ok_and(|f| f == format!("after:{}", s.id)) {
                tracing::warn!(step = %s.id, "BENCHFORM_FAILPOINT: aborting");
                std::process::abort();
            }
            true
        }
    };
    // The schedule the plan shows (`benchform_core::schedule`): phase after phase, none after a
    // failure or an interrupt.
    let halted = || stop.load(Ordering::SeqCst) || a.interrupt.signal().is_some();
    for phase in benchform_core::schedule::phases(&plan.steps) {
        if halted() {
            break;
        }
        let groups = match phase {
            Phase::Step(i) => {
                one(i).await;
                continue;
            }
            Phase::Sites(groups) => groups,
        };
        let queue = Mutex::new(std::collections::VecDeque::from(groups));
        let worker = || async {
            loop {
                if halted() {
                    break;
                }
                let Some(group) = queue.lock().ok().and_then(|mut q| q.pop_front()) else { break };
                for i in group.steps {
                    // After a failure elsewhere, no new migration starts; a migrated site still
                    // leaves maintenance mode. After an interrupt, nothing starts.
                    if a.interrupt.signal().is_some()
                        || (stop.load(Ordering::SeqCst) && !plan.steps[i].kind.runs_after_a_failure())
                    {
                        break;
                    }
                    if !one(i).await {
                        break;
                    }
                }
            }
        };
        futures_util::future::join_all((0..a.options.parallelism.max(1)).map(|_| worker())).await;
    }
    states.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request to stop (SIGINT, SIGTERM), shared between the signal watcher and the run.
#[derive(Debug, Default)]
pub struct Interrupt {
    signal: std::sync::Mutex<Option<&'static str>>,
    notify: tokio::sync::Notify,
    /// Set when the first step is about to start: from then on a signal stops the run in order.
    started: std::sync::atomic::AtomicBool,
}

impl Interrupt {
    /// The steps begin.
    pub fn start(&self) {
        self.started.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the steps have begun.
    pub fn started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Record the signal and wake everything waiting on it.
    pub fn raise(&self, signal: &'static str) {
        if let Ok(mut s) = self.signal.lock() {
            s.get_or_insert(signal);
        }
        self.notify.notify_waiters();
    }

    /// The signal that interrupted the run, if any.
    pub fn signal(&self) -> Option<&'static str> {
        self.signal.lock().ok().and_then(|s| *s)
    }

    /// Returns once the run is interrupted.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.signal().is_some() {
                return;
            }
            notified.await;
        }
    }
}
