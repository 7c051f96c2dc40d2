//! `benchform status` for people: the observed world next to the desired one.

use benchform_core::status::{Report, TagObservation};

fn yes(b: bool, y: &str, n: &str) -> String {
    if b { y.to_string() } else { n.to_string() }
}

/// The report for people.
pub fn text(r: &Report) -> String {
    let compose = match &r.compose_version {
        Some(version) => format!("{} {version}", r.compose),
        None => r.compose.clone(),
    };
    let mut out = match &r.swarm {
        None => format!("Project {} (compose {compose})\n\n", r.project),
        Some(swarm) => {
            let nodes: Vec<String> = swarm
                .nodes
                .iter()
                .map(|n| {
                    let role = if n.manager { " (manager)" } else { "" };
                    format!("{}{role} {}/{}", n.hostname, n.state, n.availability)
                })
                .collect();
            format!(
                "Project {} (swarm stack, rendered by compose {compose})\nSwarm    {} node(s): {}\n\n",
                r.project,
                swarm.nodes.len(),
                nodes.join(", ")
            )
        }
    };
    out.push_str(&format!(
        "Lock     {}\n",
        if r.lock.fresh { "benchform.lock agrees with the manifest".to_string() } else { r.lock.problems.join("; ") }
    ));
    let registry = match &r.image.registry {
        TagObservation::Present { digest } => format!("in the registry ({digest})"),
        TagObservation::Absent => "not in the registry".to_string(),
        TagObservation::Unused => "no registry (image.push: false)".to_string(),
    };
    let engine = match &r.image.engine {
        Some(id) => format!("in the engine ({})", id.get(..19).unwrap_or(id)),
        None => "not in the engine".to_string(),
    };
    out.push_str(&format!("Image    {}:{}\n         {registry}; {engine}\n", r.image.repository, r.image.tag));
    out.push_str("\nServices\n");
    if r.services.is_empty() {
        out.push_str("  (no containers: the project is not deployed)\n");
    }
    for s in &r.services {
        let verdict = match &s.desired_image {
            None => "".to_string(),
            Some(_) => yes(s.up_to_date, "  = desired", "  ≠ desired"),
        };
        out.push_str(&format!("  {:<16} {:<9} {}{verdict}\n", s.service, s.state, s.image));
        if !s.nodes.is_empty() {
            out.push_str(&format!("  {:<16} on {}\n", "", s.nodes.join(", ")));
        }
    }
    out.push_str("\nSites");
    if !r.sites_observed {
        out.push_str(" (not observed: no running backend container)\n");
    } else {
        let source = match r.apps_source.as_str() {
            "database" => "installed apps read from each site's database",
            _ => "installed apps read with `bench execute`, site by site",
        };
        out.push_str(&format!(" ({source})\n"));
    }
    for s in &r.sites {
        if !s.exists {
            out.push_str(&format!("  {:<28} {}\n", s.name, yes(r.sites_observed, "does not exist", "unknown")));
            continue;
        }
        if let Some(problem) = &s.problem {
            out.push_str(&format!("  {:<28} cannot be read: {problem}\n", s.name));
            continue;
        }
        let mut notes = Vec::new();
        if !s.missing_apps.is_empty() {
            notes.push(format!("missing {}", s.missing_apps.join(", ")));
        }
        if !s.extra_apps.is_empty() {
            notes.push(format!("extra {}", s.extra_apps.join(", ")));
        }
        notes.push(match (&s.recorded_fingerprint, s.fingerprint_matches) {
            (_, true) => "migrated to the desired code".to_string(),
            (Some(_), false) => "migrated to other code: needs migrate".to_string(),
            (None, false) => "never migrated by benchform".to_string(),
        });
        if s.maintenance_mode {
            notes.push("in maintenance mode".to_string());
        }
        if s.scheduler_paused {
            notes.push("scheduler paused".to_string());
        }
        out.push_str(&format!("  {:<28} apps {}; {}\n", s.name, s.installed.join(", "), notes.join("; ")));
    }
    if !r.drift.is_empty() {
        out.push_str("\nChanges outside benchform\n");
        for d in &r.drift {
            out.push_str(&format!("  ! {}\n", d.detail));
        }
    }
    out
}
