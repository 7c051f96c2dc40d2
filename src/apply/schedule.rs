//! The scheduler: the serial part of a plan, then each site's steps with `parallelism` sites at a
//! time; failures and interrupts stop new steps.

use std::time::{Duration, Instant};

use benchform_core::plan::{Plan, Step, StepKind};

use super::*;

/// Where a step of the plan ended.
#[derive(Debug)]
pub enum StepState {
    NotStarted,
    Finished(Result<Outcome, StepError>),
}

/// Progress callback: a step starts (`None`) or ends (`Some`, with its elapsed time).
pub type Progress<'r> = &'r (dyn Fn(&Step, Option<&Result<Outcome, StepError>>, Duration) + Sync);

/// Run `plan`. The steps up to the last one that concerns no single site (build … deploy,
/// refresh-assets) run in order; the per-site steps after them run site by site, up to
/// `options.parallelism` sites at a time. After a failure no new step or site starts; steps
/// already running finish. Returns each step's state, in plan order.
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
    let split = plan.steps.iter().rposition(|s| s.site.is_none()).map_or(0, |i| i + 1);
    let mut serial_ok = true;
    for i in 0..split {
        if a.interrupt.signal().is_some() || !one(i).await {
            serial_ok = false;
            break;
        }
    }
    if serial_ok {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, s) in plan.steps.iter().enumerate().skip(split) {
            let site = s.site.clone().unwrap_or_default();
            match groups.iter_mut().find(|(g, _)| *g == site) {
                Some((_, steps)) => steps.push(i),
                None => groups.push((site, vec![i])),
            }
        }
        let queue = Mutex::new(std::collections::VecDeque::from(groups));
        let worker = || async {
            loop {
                if stop.load(Ordering::SeqCst) || a.interrupt.signal().is_some() {
                    break;
                }
                let Some((_, steps)) = queue.lock().ok().and_then(|mut q| q.pop_front()) else { break };
                for i in steps {
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
