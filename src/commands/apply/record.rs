//! The history record of an apply (`benchform history`), written to the sites volume and next
//! to the backups.

use super::*;
use crate::apply::StepState;

pub(super) fn history_record(
    p: &observe::Prepared,
    mine: &LockInfo,
    started: &str,
    plan: &Plan,
    report: &ApplyReport,
    summary: &Summary,
    applier: &Applier<'_>,
) -> history::Record {
    let states = &report.states;
    let steps = plan
        .steps
        .iter()
        .zip(states)
        .map(|(s, st)| {
            let (status, detail) = match st {
                StepState::NotStarted => ("not_started", None),
                StepState::Finished(Ok(Outcome::Done(what))) => ("done", Some(what.clone())),
                StepState::Finished(Ok(Outcome::AlreadyDone(what))) => ("already_done", Some(what.clone())),
                StepState::Finished(Err(e)) => ("failed", Some(format!("{} (fix: {})", e.detail, e.fix))),
            };
            history::StepRecord {
                id: s.id.clone(),
                status: status.to_string(),
                detail: detail.map(|d| applier.redact(&d)),
            }
        })
        .collect();
    history::Record {
        format_version: 1,
        id: mine.id.clone(),
        started: started.to_string(),
        finished: apply::now_utc(),
        who: mine.holder.clone(),
        project: p.manifest.project.clone(),
        manifest_sha256: benchform_core::tag::sha256_hex(&p.loaded.bytes),
        lock_sha256: benchform_core::tag::sha256_hex(&p.lock_bytes),
        image: p.desired.reference(),
        plan: mine.plan.clone(),
        outcome: summary.outcome().as_str().to_string(),
        steps,
        backups: report.backups.clone(),
    }
}

pub(super) async fn write_history(applier: &Applier<'_>, record: &history::Record) -> Vec<String> {
    let host = history::host_file(&applier.p.paths.backups);
    let bench = applier.bench().await.ok();
    history::append(record, &host, bench.as_ref()).await
}
