//! The plan for people: text (Terraform-style, coloured on a terminal), markdown for pull
//! requests, and the JSON document, chosen by `--format`.

use std::io::IsTerminal;

use benchform_core::patches::{PatchPhase, Preview};
use benchform_core::plan::{Plan, Step};
use benchform_core::schedule::{Phase, Schedule};

use crate::cli::PlanFormat;
use crate::output;
use crate::plan_file::{PlanInputs, document};
use crate::shell::Shell;

/// Print a plan in the chosen format.
pub fn print(shell: &Shell, plan: &Plan, inputs: &PlanInputs, format: PlanFormat) {
    match format {
        PlanFormat::Json => shell.out(&crate::render::json(&document(plan, inputs, None))),
        PlanFormat::Markdown => shell.out(&markdown(plan, inputs.parallelism)),
        // `text` escapes every value it shows; its only escapes are its colours.
        PlanFormat::Text => shell.out_styled(&text(plan, inputs.parallelism, colour())),
    }
}

/// Colour only on a terminal, and never with `NO_COLOR` set.
fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

fn paint(text: &str, code: &str, on: bool) -> String {
    if on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

fn target(s: &Step) -> String {
    match (&s.site, &s.app) {
        (Some(site), Some(app)) => format!("{site} {app}"),
        (Some(site), None) => site.clone(),
        // A deploy's reason names its services, grouped by why.
        _ => String::new(),
    }
}

/// The summary line: "Plan: 1 build, 1 deploy, 3 migrate; 0 destructive".
pub fn summary_line(p: &Plan) -> String {
    let parts: Vec<String> = p.summary().iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("Plan: {}; {} destructive", parts.join(", "), p.destructive())
}

fn drift_lines(p: &Plan) -> String {
    let mut out = String::new();
    if !p.drift.is_empty() {
        out.push_str("\nChanges outside benchform (reported, not acted on unless the manifest requires it):\n");
        for d in &p.drift {
            out.push_str(&format!("  ! {}\n", output::escape(&d.detail)));
        }
    }
    out
}

/// The sites no step touches, and why: text lines.
pub fn blocked_lines(p: &Plan) -> String {
    let mut out = String::new();
    if !p.blocked.is_empty() {
        out.push_str("\nSites benchform cannot plan for (no step touches them):\n");
        for b in &p.blocked {
            out.push_str(&output::escape(&format!("  x {}: {}\n    = fix: {}\n", b.site, b.detail, b.fix)));
        }
    }
    out
}

/// How a phase of several sites runs: "3 sites, one at a time".
fn sites_at_a_time(sites: usize, parallelism: u16) -> String {
    match parallelism {
        _ if sites == 1 => "1 site".to_string(),
        1 => format!("{sites} sites, one at a time"),
        n => format!("{sites} sites, {} at a time", n.min(u16::try_from(sites).unwrap_or(u16::MAX))),
    }
}

/// Each site's time out of service: which steps it spans (with one site at a time), or that it
/// stays in maintenance mode.
fn out_of_service(p: &Plan, schedule: &Schedule) -> Vec<(String, String)> {
    let position = |id: &str| p.steps.iter().position(|s| s.id == id);
    schedule
        .out_of_service
        .iter()
        .filter_map(|w| {
            let from = position(&w.from)?;
            // A window ends after it starts (a hand-edited file may say otherwise: no window).
            let until = w.until.as_deref().and_then(position).filter(|u| *u > from);
            let during: Vec<&str> = p.steps[from + 1..until.unwrap_or(p.steps.len())]
                .iter()
                .filter(|s| s.site.is_none() || s.site.as_deref() == Some(w.site.as_str()))
                .map(|s| s.kind.as_str())
                .collect();
            let during = if during.is_empty() { String::new() } else { format!(" through {}", during.join(", ")) };
            Some((
                w.site.clone(),
                match until {
                    Some(until) => format!("steps {}–{}{during}", from + 1, until + 1),
                    None => {
                        format!("from step {}{during}, and stays in maintenance mode (set outside benchform)", from + 1)
                    }
                },
            ))
        })
        .collect()
}

/// The plan for people, Terraform-style.
pub fn text(p: &Plan, parallelism: u16, colour: bool) -> String {
    let mut out = String::new();
    if p.converged() {
        out.push_str("No changes. The deployment matches benchform.yaml.\n");
        out.push_str(&drift_lines(p));
        return out;
    }
    if p.is_empty() {
        out.push_str("No steps to take, but the deployment does not match benchform.yaml.\n");
        out.push_str(&blocked_lines(p));
        out.push_str(&drift_lines(p));
        return out;
    }
    out.push_str(&output::escape(&format!(
        "benchform will take these steps for {} (image {}:{}), in this order:\n",
        p.project, p.repository, p.tag
    )));
    out.push_str("  + create   ~ change   - destroy   ! destructive\n\n");
    let schedule = Schedule::of(&p.steps, parallelism);
    // Where a phase of several sites begins (its first step), and how many sites it has.
    let headers: std::collections::BTreeMap<usize, String> = benchform_core::schedule::phases(&p.steps)
        .into_iter()
        .filter_map(|ph| match ph {
            Phase::Sites(groups) => {
                let first = *groups.first()?.steps.first()?;
                let canary = groups.iter().flat_map(|g| &g.steps).any(|i| p.steps[*i].canary);
                if canary {
                    let sites: Vec<&str> = groups.iter().map(|g| g.site.as_str()).collect();
                    Some((
                        first,
                        format!(
                            "canary wave: {} first, on the new image; the other sites keep serving",
                            sites.join(", ")
                        ),
                    ))
                } else {
                    (groups.len() > 1).then(|| (first, sites_at_a_time(groups.len(), parallelism)))
                }
            }
            _ => None,
        })
        .collect();
    for (i, s) in p.steps.iter().enumerate() {
        if let Some(header) = headers.get(&i) {
            out.push_str(&format!("  -- {} --\n", output::escape(header)));
        }
        let sym = s.kind.symbol();
        let mark = format!("{sym}{}", if s.destructive { "!" } else { " " });
        let code = match sym {
            '+' => "32",
            '-' => "31",
            _ => "33",
        };
        // A deploy lists each service it touches on its own line below instead.
        let reason = match s.service_changes.len() {
            0 => s.reason.clone(),
            n => format!("the deploy touches {n} service(s):"),
        };
        out.push_str(&format!(
            "  {} {:<16} {:<30} {}\n",
            paint(&mark, code, colour),
            s.kind.as_str(),
            output::escape(&target(s)),
            output::escape(&reason)
        ));
        if let Some(pv) = &s.preview {
            out.push_str(&format!("      {}\n", output::escape(&preview_summary(pv))));
            for why in &pv.unknown {
                out.push_str(&format!("        unknown: {}\n", output::escape(why)));
            }
        }
        for c in &s.service_changes {
            let (mark, code) = if c.disruptive { ("!", "31") } else { ("~", "33") };
            let note = if c.disruptive { " — disruptive: every site loses its connections" } else { "" };
            out.push_str(&format!(
                "      {} {:<24} {}{note}\n",
                paint(mark, code, colour),
                output::escape(&c.service),
                output::escape(&c.reason)
            ));
        }
    }
    let windows = out_of_service(p, &schedule);
    if !windows.is_empty() {
        out.push_str("\nOut of service (maintenance mode, scheduler paused):\n");
        for (site, span) in &windows {
            out.push_str(&output::escape(&format!("  {site}: {span}\n")));
        }
    }
    out.push_str(&blocked_lines(p));
    out.push_str(&drift_lines(p));
    out.push_str(&format!("\n{}\n", summary_line(p)));
    out
}

/// How many patches a migrate preview lists by name in text.
const PREVIEW_NAMES: usize = 3;

/// One line of a migrate step's preview: the patches to run (the first few by name) and the
/// DocTypes changing schema; "unknown" where the plan could not know.
fn preview_summary(pv: &Preview) -> String {
    let patches = match &pv.patches {
        None => "patches: unknown".to_string(),
        Some(list) if list.is_empty() => "patches: none pending (migrate still syncs schema and fixtures)".to_string(),
        Some(list) => {
            let names: Vec<&str> = list.iter().take(PREVIEW_NAMES).map(|p| p.patch.as_str()).collect();
            let more = list.len().saturating_sub(PREVIEW_NAMES);
            let more = if more > 0 { format!(", and {more} more") } else { String::new() };
            format!("patches: {} to run: {}{more}", list.len(), names.join(", "))
        }
    };
    let doctypes = match pv.doctypes_changed {
        None => "DocTypes changed: unknown".to_string(),
        Some(n) => format!("DocTypes changed: {n}"),
    };
    format!("{patches}; {doctypes}")
}

/// A migrate preview for markdown: every patch, grouped by app and phase.
fn preview_markdown(site: &str, pv: &Preview) -> String {
    let patches = match &pv.patches {
        None => "patches *unknown*".to_string(),
        Some(list) => format!("{} patch(es)", list.len()),
    };
    let doctypes = pv.doctypes_changed.map_or_else(|| "*unknown*".to_string(), |n| n.to_string());
    let mut out = format!("- `{}`: {patches}; DocTypes changed: {doctypes}\n", cell(site));
    if let Some(list) = &pv.patches {
        let mut groups: Vec<(&str, PatchPhase, Vec<&str>)> = Vec::new();
        for p in list {
            match groups.last_mut() {
                Some((app, phase, names)) if *app == p.app && *phase == p.phase => names.push(&p.patch),
                _ => groups.push((&p.app, p.phase, vec![&p.patch])),
            }
        }
        for (app, phase, names) in groups {
            out.push_str(&format!("  - {} ({}):\n", cell(app), phase.as_str()));
            for n in names {
                out.push_str(&format!("    - `{}`\n", cell(n).replace('`', "'")));
            }
        }
    }
    for why in &pv.unknown {
        out.push_str(&format!("  - unknown: {}\n", cell(why)));
    }
    out
}

fn cell(s: &str) -> String {
    output::escape(&s.replace('|', "\\|").replace('\n', " "))
}

/// The plan for a pull-request comment: summary first, steps in a table, details folded.
pub fn markdown(p: &Plan, parallelism: u16) -> String {
    let mut out = format!("### benchform plan: `{}`\n\n", cell(&p.project));
    if p.converged() {
        out.push_str("**No changes.** The deployment matches `benchform.yaml`.\n");
    } else if p.is_empty() {
        out.push_str("**No steps to take**, but the deployment does not match `benchform.yaml`.\n");
    } else {
        out.push_str(&format!("**{}**\n\nImage: `{}:{}`\n\n", summary_line(p), cell(&p.repository), cell(&p.tag)));
        out.push_str("| # | step | target | reason |\n|---|---|---|---|\n");
        for (i, s) in p.steps.iter().enumerate() {
            let kind = if s.destructive { format!("**{}** ⚠", s.kind) } else { s.kind.to_string() };
            out.push_str(&format!("| {} | {} | {} | {} |\n", i + 1, kind, cell(&target(s)), cell(&s.reason)));
        }
        let schedule = Schedule::of(&p.steps, parallelism);
        let windows = out_of_service(p, &schedule);
        if !windows.is_empty() {
            out.push_str("\n**Out of service** (maintenance mode, scheduler paused):\n\n");
            for (site, span) in &windows {
                out.push_str(&format!("- `{}`: {}\n", cell(site), cell(span)));
            }
        }
        let previews: Vec<(&str, &Preview)> =
            p.steps.iter().filter_map(|s| Some((s.site.as_deref()?, s.preview.as_ref()?))).collect();
        if !previews.is_empty() {
            let count: usize = previews.iter().filter_map(|(_, pv)| pv.patches.as_ref().map(Vec::len)).sum();
            out.push_str(&format!(
                "\n<details><summary>What migrate will run ({count} patch(es) on {} site(s))</summary>\n\n",
                previews.len()
            ));
            for (site, pv) in previews {
                out.push_str(&preview_markdown(site, pv));
            }
            out.push_str("\n</details>\n");
        }
        out.push_str("\n<details><summary>Schedule</summary>\n\n");
        for (n, phase) in benchform_core::schedule::phases(&p.steps).iter().enumerate() {
            match phase {
                Phase::Step(i) => out.push_str(&format!("{}. `{}`\n", n + 1, cell(&p.steps[*i].id))),
                Phase::Sites(groups) => {
                    out.push_str(&format!("{}. {}:\n", n + 1, sites_at_a_time(groups.len(), parallelism)));
                    for g in groups {
                        let ids: Vec<String> = g.steps.iter().map(|i| format!("`{}`", cell(&p.steps[*i].id))).collect();
                        out.push_str(&format!("   - {}: {}\n", cell(&g.site), ids.join(" → ")));
                    }
                }
            }
        }
        out.push_str("\n</details>\n");
        out.push_str("\n<details><summary>Step dependencies</summary>\n\n");
        for s in &p.steps {
            let deps = if s.depends_on.is_empty() { "—".to_string() } else { s.depends_on.join(", ") };
            out.push_str(&format!("- `{}` after {}\n", cell(&s.id), cell(&deps)));
        }
        out.push_str("\n</details>\n");
    }
    if !p.blocked.is_empty() {
        out.push_str("\n**Sites benchform cannot plan for** (no step touches them):\n\n");
        for b in &p.blocked {
            out.push_str(&format!("- `{}`: {} — fix: {}\n", cell(&b.site), cell(&b.detail), cell(&b.fix)));
        }
    }
    if !p.drift.is_empty() {
        out.push_str(&format!("\n<details><summary>Changes outside benchform ({})</summary>\n\n", p.drift.len()));
        for d in &p.drift {
            out.push_str(&format!("- {}\n", cell(&d.detail)));
        }
        out.push_str("\n</details>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use benchform_core::patches::{PatchPhase, PendingPatch, Preview};
    use benchform_core::plan::{Plan, RestoreFrom, Step, StepKind, step_id};

    fn step(kind: StepKind, site: &str, reason: &str, preview: Option<Preview>) -> Step {
        Step {
            id: step_id(kind, Some(site), None),
            kind,
            site: Some(site.to_string()),
            app: None,
            reason: reason.to_string(),
            destructive: false,
            depends_on: Vec::new(),
            services: Vec::new(),
            service_changes: Vec::new(),
            preview,
            restore: None,
            canary: false,
        }
    }

    fn pending(app: &str, phase: PatchPhase, patch: &str) -> PendingPatch {
        PendingPatch { app: app.to_string(), phase, patch: patch.to_string() }
    }

    /// A release migrating three sites: one whose patches are known, one with none pending (it
    /// still migrates), one whose preview could not be read.
    fn release() -> Plan {
        let source = "patches.txt of each app at its locked commit (app repositories), the site's Patch Log";
        let known = Preview {
            patches: Some(vec![
                pending("erpnext", PatchPhase::PreModelSync, "erpnext.patches.v15_0.rename_field"),
                pending("erpnext", PatchPhase::PreModelSync, "execute:frappe.delete_doc('Page', 'x') #2024"),
                pending("erpnext", PatchPhase::PostModelSync, "erpnext.patches.v15_0.backfill"),
                pending("acme_app", PatchPhase::PostModelSync, "acme_app.patches.v1_1.tier"),
            ]),
            doctypes_changed: Some(7),
            source: source.to_string(),
            unknown: Vec::new(),
        };
        let none = Preview { patches: Some(Vec::new()), doctypes_changed: Some(0), ..known.clone() };
        let unknown = Preview {
            patches: None,
            doctypes_changed: None,
            source: source.to_string(),
            unknown: vec![
                "acme_app's patches.txt: https://git.example.com/acme_app.git asks for credentials and none were given (at v1.1.0; ACME_APP_TOKEN is not set)".to_string(),
                "DocTypes changed: benchform has no record of the code the site last migrated to".to_string(),
            ],
        };
        let reason = "its apps' code changed (erpnext v15.1.0 → v15.2.0)";
        Plan {
            project: "erp".to_string(),
            repository: "registry.example.com/erp".to_string(),
            tag: "bf1-0123456789ab".to_string(),
            steps: vec![
                step(StepKind::Migrate, "a.example.com", reason, Some(known)),
                step(StepKind::Migrate, "b.example.com", reason, Some(none)),
                step(StepKind::Migrate, "c.example.com", reason, Some(unknown)),
            ],
            blocked: Vec::new(),
            drift: Vec::new(),
        }
    }

    /// A release with a canary wave (the canary migrated and smoke-tested first), and a rollback
    /// by revert (a site's data restored from an older backup): the steps as the planner lists them.
    fn waves_and_rollback() -> Plan {
        let mut steps = Vec::new();
        let mut add = |kind: StepKind, site: &str, reason: &str, canary: bool| {
            let mut s = step(kind, site, reason, None);
            s.canary = canary;
            if let Some(prev) = steps.last() {
                let prev: &Step = prev;
                s.depends_on = vec![prev.id.clone()];
            }
            s.destructive = kind.destructive();
            steps.push(s);
        };
        add(
            StepKind::MaintenanceOn,
            "s2.example.com",
            "s2.example.com will migrate: stop requests and pause the scheduler first",
            false,
        );
        add(StepKind::Backup, "s2.example.com", "restore point before s2.example.com migrates", false);
        add(
            StepKind::Migrate,
            "s2.example.com",
            "canary: erpnext v15.1.0 → v15.2.0 — in a one-off container of bf1-new, while the other sites keep serving on the image they run",
            true,
        );
        add(
            StepKind::Smoke,
            "s2.example.com",
            "canary: `bench --site s2.example.com execute frappe.ping` must succeed there before the new image goes out to the other sites",
            true,
        );
        add(
            StepKind::MaintenanceOn,
            "s1.example.com",
            "s1.example.com will migrate: stop requests and pause the scheduler first",
            false,
        );
        add(
            StepKind::Backup,
            "s1.example.com",
            "safety copy of s1.example.com as it is now, before its data goes back to an older backup",
            false,
        );
        add(
            StepKind::Restore,
            "s1.example.com",
            "rollback: its schema was migrated to newer code (hrms v1.1.0), which Frappe cannot migrate back; its data goes back to the backup benchform took on 2026-12-02T10:00:00Z before that migrate — everything written since then is lost",
            false,
        );
        if let Some(s) = steps.last_mut() {
            s.restore = Some(RestoreFrom {
                backup: "20261202T100000Z".to_string(),
                taken_at: "2026-12-02T10:00:00Z".to_string(),
            });
        }
        let mut deploy = step(StepKind::Deploy, "", "backend: runs bf1-0123456789ab", None);
        (deploy.id, deploy.site, deploy.depends_on) =
            ("deploy".to_string(), None, steps.iter().map(|s| s.id.clone()).collect());
        steps.push(deploy);
        for (kind, site, reason) in [
            (StepKind::Migrate, "s1.example.com", "hrms v1.1.0 → v1.0.0"),
            (StepKind::MaintenanceOff, "s1.example.com", "s1.example.com is migrated: serve it again"),
            (
                StepKind::MaintenanceOff,
                "s2.example.com",
                "s2.example.com passed as canary and now runs the new image: serve it again",
            ),
        ] {
            let mut s = step(kind, site, reason, None);
            s.depends_on = vec!["deploy".to_string()];
            steps.push(s);
        }
        Plan {
            project: "erp".to_string(),
            repository: "registry.example.com/erp".to_string(),
            tag: "bf1-0123456789ab".to_string(),
            steps,
            blocked: Vec::new(),
            drift: Vec::new(),
        }
    }

    #[test]
    fn canary_waves_and_restores_render_in_text_and_markdown() {
        insta::assert_snapshot!("waves_and_rollback_text", super::text(&waves_and_rollback(), 1, false));
        insta::assert_snapshot!("waves_and_rollback_markdown", super::markdown(&waves_and_rollback(), 1));
    }

    #[test]
    fn migrate_previews_render_in_text() {
        insta::assert_snapshot!(super::text(&release(), 1, false));
    }

    #[test]
    fn migrate_previews_render_in_markdown() {
        insta::assert_snapshot!(super::markdown(&release(), 1));
    }
}
