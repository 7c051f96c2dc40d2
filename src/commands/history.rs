//! `benchform history`: the applies of this deployment, from the `sites` volume and this host.

use benchform_bench::Bench;

use crate::Status;
use crate::cli::{Format, HistoryArgs};
use crate::history;
use crate::observe;
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &HistoryArgs) -> Status {
    let loaded = match crate::load::load(args.manifest.file.as_deref()) {
        Ok(l) => l,
        Err(d) => return crate::render::fail(shell, &d),
    };
    let Some(manifest) = loaded.validation.manifest.as_ref() else {
        return crate::render::fail(shell, &loaded.validation.diagnostics);
    };
    let host = history::host_file(&observe::Paths::new(manifest, &loaded.dir).backups);
    let rt = crate::runtime();
    // The deployment's copy needs a running backend; without an engine the host's copy is all.
    let result = rt.block_on(async {
        let engine = match observe::engine().await {
            Ok(engine) => Some(engine),
            Err(e) => {
                // Said, not fatal: the host's copy may be all there is, but a wrong key or host
                // key must not pass for "no engine".
                let what = format!(
                    "cannot reach the engine: {}; showing only this machine's copy ({})",
                    e.detail,
                    host.display()
                );
                shell.warn(&what, Some(&e.fix));
                None
            }
        };
        let container = match &engine {
            Some(e) => {
                let manager = match manifest.deploy.target {
                    benchform_manifest::model::DeployTarget::Compose => None,
                    benchform_manifest::model::DeployTarget::Swarm => match crate::swarm::manager(e).await {
                        Ok(manager) => Some(manager),
                        Err(why) => {
                            let what = format!("{}; showing only this machine's copy ({})", why.detail, host.display());
                            shell.warn(&what, Some(&why.fix));
                            None
                        }
                    },
                };
                crate::swarm::bench_container(e, manifest, manager.as_ref()).await.ok().flatten()
            }
            None => None,
        };
        let bench = engine.as_ref().zip(container).map(|(engine, container)| Bench { engine, container });
        history::read(&host, bench.as_ref()).await
    });
    let (records, torn, note) = result;
    let skip = args.last.map_or(0, |n| records.len().saturating_sub(n));
    let records = &records[skip..];
    match args.format {
        Format::Json => shell.out(&crate::render::json(&records)),
        Format::Text => {
            if records.is_empty() {
                shell.line(&format!("No apply of {} is recorded yet.", manifest.project));
            }
            for r in records {
                let count = |status: &str| r.steps.iter().filter(|s| s.status == status).count();
                shell.line(&format!("{}  {:<7}  {}  by {}  ({})", r.started, r.outcome, r.id, r.who, r.plan));
                shell.line(&format!(
                    "    image {}; {} step(s): {} done, {} already done, {} failed, {} not started",
                    r.image,
                    r.steps.len(),
                    count("done"),
                    count("already_done"),
                    count("failed"),
                    count("not_started")
                ));
                for s in r.steps.iter().filter(|s| s.status == "failed") {
                    shell.line(&format!("    failed {}: {}", s.id, s.detail.as_deref().unwrap_or_default()));
                }
                for b in &r.backups {
                    shell.line(&format!("    backup {b}"));
                }
            }
        }
    }
    if let Some(why) = note {
        shell.err_line(&format!("note: only this host's copy of the history was read ({why})"));
    }
    if torn > 0 {
        shell.err_line(&format!("note: {torn} unreadable history line(s) skipped"));
    }
    Status::Success
}
