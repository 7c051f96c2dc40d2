//! The planner on values: one scenario per test, each plan snapshotted as a table of steps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use benchform_core::plan::{Plan, PlanError, PlanOptions, plan};
use benchform_core::record::SiteRecord;
use benchform_core::status::{
    Desired, DesiredSite, HostBackup, Observed, ObservedContainer, ObservedSite, ServiceSpec, TagObservation,
};

const OLD: &str = "bf1-000000000000000000000old";
const NEW: &str = "bf1-000000000000000000000new";
const REPO: &str = "registry.example.com/acme/erp";

/// Commits: frappe f1, erpnext e1, hrms h1, payments p1; `bump` replaces some.
fn commit(app: &str, bumped: &[&str]) -> String {
    let c = if bumped.contains(&app) { '2' } else { '1' };
    format!("{}{}", &app[..1], c.to_string().repeat(39))
}

fn version(app: &str, bumped: &[&str]) -> String {
    if bumped.contains(&app) { "v15.2.0".to_string() } else { "v15.1.0".to_string() }
}

fn desired_site(name: &str, apps: &[&str], bumped: &[&str]) -> DesiredSite {
    let mut all = vec!["frappe".to_string()];
    all.extend(apps.iter().map(|a| a.to_string()));
    let commits: BTreeMap<String, String> = all.iter().map(|a| (a.clone(), commit(a, bumped))).collect();
    let refs: BTreeMap<String, String> = all.iter().map(|a| (a.clone(), version(a, bumped))).collect();
    DesiredSite {
        name: name.into(),
        fingerprint: benchform_core::record::fingerprint(&commits),
        apps: all,
        commits,
        refs,
    }
}

fn desired(sites: &[(&str, &[&str])], image_apps: &[&str], bumped: &[&str]) -> Desired {
    let mut apps = vec!["frappe".to_string()];
    apps.extend(image_apps.iter().map(|a| a.to_string()));
    Desired {
        project: "acme".into(),
        repository: REPO.into(),
        tag: NEW.into(),
        image_commits: apps.iter().map(|a| (a.clone(), commit(a, bumped))).collect(),
        image_refs: apps.iter().map(|a| (a.clone(), version(a, bumped))).collect(),
        image_apps: apps,
        sites: sites.iter().map(|(n, a)| desired_site(n, a, bumped)).collect(),
        allow_uninstall: false,
        canary: Vec::new(),
        smoke: Vec::new(),
        build_local: false,
        swarm: false,
    }
}

/// A site as benchform left it after migrating to `apps` at `bumped` commits.
fn migrated(name: &str, apps: &[&str], bumped: &[&str]) -> ObservedSite {
    let d = desired_site(name, apps, bumped);
    ObservedSite {
        name: name.into(),
        installed: d.apps.clone(),
        record: Some(SiteRecord::new("acme", d.commits, d.refs, &format!("{REPO}:{OLD}"), None, "t")),
        maintenance_mode: false,
        scheduler_paused: false,
        maintenance_held: false,
        scheduler_paused_before: false,
        damaged: None,
    }
}

fn container(service: &str, tag: &str) -> ObservedContainer {
    ObservedContainer {
        service: service.into(),
        name: format!("acme_{service}_1"),
        state: if service == "configurator" { "exited".into() } else { "running".into() },
        image: format!("{REPO}:{tag}"),
        image_id: format!("sha256:{tag}"),
        desired_image: Some(format!("{REPO}:{NEW}")),
        built_for: Some("acme".into()),
        config_hash: Some("h".into()),
        desired_config_hash: Some("h".into()),
        exit_code: (service == "configurator").then_some(0),
        compose: Some("v1".into()),
    }
}

const SERVICES: [&str; 4] = ["backend", "configurator", "queue-short", "scheduler"];

/// A deployment running `tag`, with `sites`; the registry has NEW only if `tag == NEW`.
fn observed(tag: &str, sites: Vec<ObservedSite>) -> Observed {
    Observed {
        compose: "v1".into(),
        compose_version: Some("1.29.2".into()),
        registry: if tag == NEW {
            TagObservation::Present { digest: "sha256:new".into() }
        } else {
            TagObservation::Absent
        },
        engine_image: (tag == NEW).then(|| "sha256:new".to_string()),
        containers: SERVICES.iter().map(|s| container(s, tag)).collect(),
        deploy_services: SERVICES.iter().map(|s| s.to_string()).collect(),
        services: SERVICES
            .iter()
            .map(|s| {
                let spec = ServiceSpec {
                    restart: Some(if *s == "configurator" { "on-failure" } else { "unless-stopped" }.to_string()),
                    image: Some(format!("{REPO}:{NEW}")),
                    depends_on: if *s == "configurator" { vec![] } else { vec!["configurator".to_string()] },
                };
                (s.to_string(), spec)
            })
            .collect(),
        has_volumes: true,
        sites,
        apps_source: benchform_core::status::AppsSource::Database,
        sites_observed: true,
        missing_bases: Vec::new(),
        other_projects: Vec::new(),
        backups: BTreeMap::new(),
        bench_container: Some("acme_backend_1".into()),
        swarm: None,
    }
}

fn table(p: &Plan) -> String {
    let mut out = String::new();
    for b in &p.blocked {
        out.push_str(&format!("  BLOCKED {}: {}\n      fix: {}\n", b.site, b.detail, b.fix));
    }
    if p.steps.is_empty() {
        out.push_str("(no steps)\n");
        return out;
    }
    for s in &p.steps {
        out.push_str(&format!(
            "{}{:<34} {}\n      after: [{}]\n",
            if s.destructive { "! " } else { "  " },
            s.id,
            s.reason,
            s.depends_on.join(", ")
        ));
    }
    let summary: Vec<String> = p.summary().iter().map(|(k, n)| format!("{n} {k}")).collect();
    out.push_str(&format!("summary: {}; {} destructive\n", summary.join(", "), p.destructive()));
    out
}

fn ok(d: &Desired, o: &Observed) -> String {
    table(&plan(d, o, &PlanOptions::default(), vec![]).unwrap())
}

fn errors(d: &Desired, o: &Observed, options: PlanOptions) -> Vec<PlanError> {
    plan(d, o, &options, vec![]).unwrap_err()
}

const TWO_SITES: &[(&str, &[&str])] = &[("a.example.com", &["erpnext", "hrms"]), ("b.example.com", &["erpnext"])];

fn converged() -> (Desired, Observed) {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &[]);
    let mut o = observed(
        NEW,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    // Migrated by benchform on the image they run.
    for s in &mut o.sites {
        if let Some(r) = s.record.as_mut() {
            r.image = format!("{REPO}:{NEW}");
        }
    }
    (d, o)
}

#[test]
fn unchanged_deployment_plans_nothing() {
    let (d, o) = converged();
    assert_eq!(ok(&d, &o), "(no steps)\n");
}

#[test]
fn first_deployment_from_nothing() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &[]);
    let mut o = observed(NEW, vec![]);
    o.registry = TagObservation::Absent;
    o.engine_image = None;
    o.containers.clear();
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn app_repinned_used_by_two_of_five_sites() {
    let sites: &[(&str, &[&str])] = &[
        ("s1.example.com", &["erpnext", "hrms"]),
        ("s2.example.com", &["erpnext"]),
        ("s3.example.com", &["erpnext", "hrms"]),
        ("s4.example.com", &["erpnext"]),
        ("s5.example.com", &["erpnext"]),
    ];
    let d = desired(sites, &["erpnext", "hrms"], &["hrms"]);
    let o = observed(OLD, sites.iter().map(|(n, a)| migrated(n, a, &[])).collect());
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn a_canary_migrates_and_passes_its_smoke_test_before_the_other_sites_leave_service() {
    let sites: &[(&str, &[&str])] =
        &[("s1.example.com", &["erpnext"]), ("s2.example.com", &["erpnext"]), ("s3.example.com", &["erpnext"])];
    let mut d = desired(sites, &["erpnext"], &["erpnext"]);
    d.canary = vec!["s2.example.com".into()];
    d.smoke = ["bench", "--site", "{site}", "execute", "frappe.ping"].map(String::from).to_vec();
    let o = observed(OLD, sites.iter().map(|(n, a)| migrated(n, a, &[])).collect());
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let canary: Vec<&str> = p.steps.iter().filter(|s| s.canary).map(|s| s.id.as_str()).collect();
    assert_eq!(canary, ["migrate:s2.example.com", "smoke:s2.example.com"]);
    // Two waves of sites: the canary, then the others (after its smoke test), then the deploy.
    let phases = benchform_core::schedule::phases(&p.steps);
    let waves: Vec<Vec<String>> = phases
        .iter()
        .filter_map(|ph| match ph {
            benchform_core::schedule::Phase::Sites(g) => Some(g.iter().map(|g| g.site.clone()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(waves[0], ["s2.example.com"]);
    assert_eq!(waves[1], ["s1.example.com", "s3.example.com"]);
    insta::assert_snapshot!(table(&p));
    // Two canaries go one after the other, then the rest.
    d.canary = vec!["s3.example.com".into(), "s2.example.com".into()];
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let waves: Vec<Vec<String>> = benchform_core::schedule::phases(&p.steps)
        .iter()
        .filter_map(|ph| match ph {
            benchform_core::schedule::Phase::Sites(g) => Some(g.iter().map(|g| g.site.clone()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(waves[..3], [vec!["s3.example.com"], vec!["s2.example.com"], vec!["s1.example.com"]]);
    // Without an image change there is nothing to try first: the canary migrates as any site.
    let (mut d, mut o) = converged();
    d.canary = vec!["a.example.com".into()];
    o.sites[0].installed.retain(|a| a != "hrms");
    assert!(plan(&d, &o, &PlanOptions::default(), vec![]).unwrap().steps.iter().all(|s| !s.canary));
}

#[test]
fn frappe_bumped_migrates_every_site() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["frappe"]);
    let o = observed(
        OLD,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn new_app_on_one_site_needs_no_new_image() {
    let d = desired(
        &[("a.example.com", &["erpnext", "hrms"]), ("b.example.com", &["erpnext", "hrms"])],
        &["erpnext", "hrms"],
        &[],
    );
    let o = observed(
        NEW,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn new_app_in_the_image_for_one_site() {
    let d = desired(
        &[("a.example.com", &["erpnext", "hrms", "payments"]), ("b.example.com", &["erpnext"])],
        &["erpnext", "hrms", "payments"],
        &[],
    );
    let o = observed(
        OLD,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn new_site() {
    let d = desired(
        &[("a.example.com", &["erpnext", "hrms"]), ("b.example.com", &["erpnext"]), ("c.example.com", &["erpnext"])],
        &["erpnext", "hrms"],
        &[],
    );
    let o = observed(
        NEW,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn site_dropped_from_the_manifest_is_left_alone() {
    let d = desired(&[("a.example.com", &["erpnext", "hrms"])], &["erpnext", "hrms"], &[]);
    let o = observed(
        NEW,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    assert_eq!(ok(&d, &o), "(no steps)\n");
}

#[test]
fn app_removed_from_the_image_without_allow_uninstall_is_refused() {
    let d = desired(&[("a.example.com", &["erpnext"]), ("b.example.com", &["erpnext"])], &["erpnext"], &[]);
    let o = observed(
        OLD,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    let errs = errors(&d, &o, PlanOptions::default());
    assert_eq!(errs, [PlanError::AppMissingFromImage { site: "a.example.com".into(), app: "hrms".into() }]);
    insta::assert_snapshot!(errs[0].to_string());
}

#[test]
fn app_removed_from_the_image_with_allow_uninstall() {
    let mut d = desired(&[("a.example.com", &["erpnext"]), ("b.example.com", &["erpnext"])], &["erpnext"], &[]);
    d.allow_uninstall = true;
    let o = observed(
        OLD,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn app_removed_from_one_site_only_needs_allow_uninstall() {
    let d = desired(&[("a.example.com", &["erpnext"]), ("b.example.com", &["erpnext"])], &["erpnext", "hrms"], &[]);
    let o = observed(
        NEW,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    assert_eq!(
        errors(&d, &o, PlanOptions::default()),
        [PlanError::UninstallNotAllowed { site: "a.example.com".into(), app: "hrms".into() }]
    );
    let mut d = d;
    d.allow_uninstall = true;
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn image_in_the_engine_but_not_the_registry_is_verified_and_pushed() {
    let (d, mut o) = converged();
    o.registry = TagObservation::Absent;
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn service_drifted_to_another_image_is_redeployed() {
    let (d, mut o) = converged();
    o.containers[2].image = "someone/else:latest".into();
    o.containers[2].built_for = None;
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn compose_configuration_change_recreates_without_migrating() {
    let (d, mut o) = converged();
    o.containers[0].desired_config_hash = Some("other".into());
    insta::assert_snapshot!(ok(&d, &o));
}

/// A deployment made by compose v1, now driven by v2: the hashes differ for every container, and
/// the plan says why (not "configuration changed"); no site migrates.
#[test]
fn moving_from_compose_v1_to_v2_recreates_every_service_and_says_why() {
    let (d, mut o) = converged();
    o.compose = "v2".into();
    for c in &mut o.containers {
        c.desired_config_hash = Some("v2-hash".into());
    }
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn app_installed_by_hand_is_drift_not_a_step() {
    let (d, mut o) = converged();
    o.sites[1].installed.push("hrms".into());
    assert_eq!(ok(&d, &o), "(no steps)\n");
}

/// Issue 13 §1: b got hrms by hand; hrms is re-pinned for a. b runs hrms too, so it migrates.
#[test]
fn app_installed_by_hand_migrates_the_site_when_its_code_changes() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["hrms"]);
    let mut b = migrated("b.example.com", &["erpnext", "hrms"], &[]);
    // benchform migrated b after the hand install: its record tracks hrms as undeclared.
    b.record = b.record.map(|r| r.with_undeclared(vec!["hrms".into()]));
    let o = observed(OLD, vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), b]);
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let reason = |id: &str| p.steps.iter().find(|s| s.id == id).map(|s| s.reason.clone());
    assert_eq!(
        reason("migrate:b.example.com").as_deref(),
        Some("hrms v15.1.0 → v15.2.0 (installed outside the manifest)")
    );
    assert!(reason("backup:b.example.com").is_some() && reason("maintenance-off:b.example.com").is_some());
    // Tracked, never dropped.
    assert!(!p.steps.iter().any(|s| s.kind == benchform_core::plan::StepKind::UninstallApp));
    insta::assert_snapshot!(table(&p));
}

/// A record written before hand-installed apps were tracked does not know the app's code: the
/// site migrates when the image changes, and not when it does not (no one-time migrate of every
/// converged site for the new fingerprint definition).
#[test]
fn app_installed_by_hand_unknown_to_the_record_migrates_only_with_an_image_change() {
    let (d, mut o) = converged();
    o.sites[1].installed.push("hrms".into());
    // Migrated by benchform on the image it runs now: nothing changed under hrms.
    assert_eq!(ok(&d, &o), "(no steps)\n");
    // Migrated on an older image (a run that deployed and stopped before b's migrate, or a
    // release b took no part in): hrms's code at b's last migrate is unknown, so b migrates.
    o.sites[1].record.as_mut().unwrap().image = format!("{REPO}:{OLD}");
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    assert_eq!(
        p.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [
            "maintenance-on:b.example.com",
            "backup:b.example.com",
            "migrate:b.example.com",
            "maintenance-off:b.example.com"
        ]
    );
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["erpnext"]);
    let mut o = observed(
        OLD,
        vec![
            migrated("a.example.com", &["erpnext", "hrms"], &["erpnext"]),
            migrated("b.example.com", &["erpnext"], &["erpnext"]),
        ],
    );
    o.sites[1].installed.push("hrms".into());
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let migrates: Vec<(&str, &str)> = p
        .steps
        .iter()
        .filter(|s| s.kind == benchform_core::plan::StepKind::Migrate)
        .map(|s| (s.site.as_deref().unwrap_or(""), s.reason.as_str()))
        .collect();
    assert_eq!(
        migrates,
        vec![(
            "b.example.com",
            "hrms (installed outside the manifest) was installed after benchform last migrated b.example.com and gets \
             new code with the new image"
        )]
    );
}

/// Installed by hand, gone from the image: refused whatever the policy, and never uninstalled.
#[test]
fn app_installed_by_hand_missing_from_the_image_is_refused_even_with_allow_uninstall() {
    let (mut d, mut o) = converged();
    d.allow_uninstall = true;
    o.sites[1].installed.push("payments".into());
    let errs = errors(&d, &o, PlanOptions::default());
    assert_eq!(errs.len(), 1);
    insta::assert_snapshot!(errs[0].to_string());
}

/// Issue 13 §3: without a deploy, apply runs each site's steps together; the plan lists them so,
/// and its schedule (what the JSON plan carries) says how many sites run at once.
#[test]
fn without_a_deploy_each_sites_steps_are_listed_together_as_apply_runs_them() {
    let d = desired(
        &[("a.example.com", &["erpnext", "hrms"]), ("b.example.com", &["erpnext", "hrms"])],
        &["erpnext", "hrms"],
        &[],
    );
    let o =
        observed(NEW, vec![migrated("a.example.com", &["erpnext"], &[]), migrated("b.example.com", &["erpnext"], &[])]);
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let schedule = benchform_core::schedule::Schedule::of(&p.steps, 2);
    insta::assert_snapshot!(format!("{}\n{}", table(&p), serde_json::to_string_pretty(&schedule).unwrap()));
}

/// Issue 13 §2: an override changes redis-cache; the db is stopped; a container compose made for a
/// service the files dropped remains. One deploy names each, the database and redis restarts as
/// disruptive, the configurator `up` starts again with backend, and the orphan it removes.
#[test]
fn every_service_compose_touches_is_in_the_deploy_step() {
    let (d, mut o) = converged();
    for (name, image, state) in [("redis-cache", "redis:8.6-alpine", "running"), ("db", "mariadb:11.8", "exited")] {
        o.services.insert(
            name.into(),
            ServiceSpec { restart: Some("unless-stopped".into()), image: Some(image.into()), depends_on: vec![] },
        );
        let mut c = container(name, NEW);
        c.image = image.into();
        c.desired_image = None;
        c.state = state.into();
        c.exit_code = (state == "exited").then_some(137);
        if name == "redis-cache" {
            c.desired_config_hash = Some("h2".into());
        }
        o.containers.push(c);
    }
    // backend's configuration changed too (an override on it).
    o.containers.iter_mut().find(|c| c.service == "backend").unwrap().desired_config_hash = Some("h3".into());
    o.services.get_mut("backend").unwrap().depends_on.push("redis-cache".into());
    let mut orphan = container("old-worker", NEW);
    orphan.desired_image = None;
    o.containers.push(orphan);
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    assert_eq!(p.steps.len(), 1);
    let deploy = &p.steps[0];
    assert_eq!(deploy.services, vec!["backend", "db", "redis-cache"]);
    insta::assert_snapshot!(format!(
        "{}\n{}",
        deploy.reason,
        serde_json::to_string_pretty(&deploy.service_changes).unwrap()
    ));
}

#[test]
fn downgrade_is_refused_unless_allowed() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &[]);
    let o = observed(
        OLD,
        vec![
            migrated("a.example.com", &["erpnext", "hrms"], &["erpnext"]),
            migrated("b.example.com", &["erpnext"], &[]),
        ],
    );
    let errs = errors(&d, &o, PlanOptions::default());
    assert_eq!(errs.len(), 1);
    insta::assert_snapshot!(errs[0].to_string());
    let allowed = plan(&d, &o, &PlanOptions { allow_downgrade: true, ..Default::default() }, vec![]).unwrap();
    assert!(allowed.steps.iter().any(|s| s.id == "migrate:a.example.com"));
}

/// A backup benchform kept of `site` at `taken_at`, while its schema matched `apps` at `bumped`.
fn kept_backup(site: &str, apps: &[&str], bumped: &[&str], taken_at: &str) -> HostBackup {
    HostBackup {
        name: taken_at.replace([':', '-'], ""),
        taken_at: taken_at.to_string(),
        record: migrated(site, apps, bumped).record,
    }
}

#[test]
fn a_revert_restores_each_site_from_the_backup_taken_before_it_migrated() {
    // erpnext went v15.1.0 → v15.2.0 on both sites on 2 December; the manifest is reverted.
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &[]);
    let mut o = observed(
        OLD,
        vec![
            migrated("a.example.com", &["erpnext", "hrms"], &["erpnext"]),
            migrated("b.example.com", &["erpnext"], &["erpnext"]),
        ],
    );
    // The image of the reverted release is still in the registry: no build.
    o.registry = TagObservation::Present { digest: "sha256:reverted".into() };
    for s in &mut o.sites {
        if let Some(r) = s.record.as_mut() {
            r.migrated_at = "2026-12-02T10:05:00Z".into();
        }
    }
    o.backups.insert(
        "a.example.com".into(),
        vec![
            kept_backup("a.example.com", &["erpnext", "hrms"], &[], "2026-11-20T09:00:00Z"),
            kept_backup("a.example.com", &["erpnext", "hrms"], &[], "2026-12-02T10:00:00Z"),
            // Taken after the migrate (a later release's safety copy): of the newer code.
            kept_backup("a.example.com", &["erpnext", "hrms"], &["erpnext"], "2026-12-03T08:00:00Z"),
        ],
    );
    // Without --allow-restore: refused, naming both ways out.
    let errs = errors(&d, &o, PlanOptions::default());
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].to_string().contains("--allow-restore") && errs[0].to_string().contains("--allow-downgrade"));
    // b has no backup of the code it goes back to: the whole plan is refused for it.
    let errs = errors(&d, &o, PlanOptions { allow_restore: true, ..Default::default() });
    assert_eq!(errs.len(), 1, "{errs:?}");
    insta::assert_snapshot!("revert_without_a_restore_point", errs[0].to_string());
    o.backups
        .insert("b.example.com".into(), vec![kept_backup("b.example.com", &["erpnext"], &[], "2026-12-02T10:01:00Z")]);
    let p = plan(&d, &o, &PlanOptions { allow_restore: true, ..Default::default() }, vec![]).unwrap();
    let a = p.steps.iter().find(|s| s.id == "restore:a.example.com").unwrap();
    assert_eq!(a.restore.as_ref().unwrap().backup, "20261202T100000Z", "the newest backup of the old code");
    insta::assert_snapshot!(table(&p));
}

#[test]
fn compose_projects_benchform_cannot_deploy_are_refused_whatever_the_sites() {
    let (d, o) = converged();
    let spec = |image: &str| ServiceSpec { image: Some(image.to_string()), ..Default::default() };
    // frappe_docker's migrator override, and its Postgres override.
    let mut with = o.clone();
    with.services.insert("migrator".into(), spec(&format!("{REPO}:{NEW}")));
    with.services.insert("db".into(), spec("postgres:15.17"));
    let errs = errors(&d, &with, PlanOptions::default());
    assert!(matches!(errs[0], PlanError::MigratorService), "{errs:?}");
    assert!(matches!(&errs[1], PlanError::PostgresDatabase { service, .. } if service == "db"), "{errs:?}");
    // A compose file rendered with `config` (or pwd.yml): fixed images, none the manifest's.
    let mut rendered = o.clone();
    rendered.deploy_services.clear();
    for s in rendered.services.values_mut() {
        s.image = Some("frappe/erpnext:v15.88.1".into());
    }
    let errs = errors(&d, &rendered, PlanOptions::default());
    insta::assert_snapshot!(errs[0].to_string());
}

#[test]
fn the_same_compose_files_under_another_project_refuse_a_second_stack_unless_allowed() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &[]);
    let mut o = observed(NEW, vec![]);
    o.containers.clear();
    o.has_volumes = false;
    o.sites_observed = false;
    o.other_projects = vec!["erpnext-prod".into()];
    let errs = errors(&d, &o, PlanOptions::default());
    assert!(matches!(&errs[0], PlanError::AnotherProjectRuns { others, .. } if others == "erpnext-prod"), "{errs:?}");
    let allowed = plan(&d, &o, &PlanOptions { allow_new_project: true, ..Default::default() }, vec![]).unwrap();
    assert!(allowed.steps.iter().any(|s| s.id == "new-site:a.example.com"));
}

#[test]
fn a_missing_base_image_stops_the_plan_only_when_a_build_is_needed() {
    let (d, mut o) = converged();
    o.missing_bases.push(benchform_core::status::MissingBase {
        image: "frappe/build:v15.1.0".into(),
        detail: "the build starts FROM frappe/build:v15.1.0".into(),
        fix: "set image.base_tag".into(),
    });
    assert!(plan(&d, &o, &PlanOptions::default(), vec![]).is_ok(), "the image exists: nothing is built");
    o.registry = TagObservation::Absent;
    o.engine_image = None;
    let errs = errors(&d, &o, PlanOptions::default());
    assert!(matches!(&errs[0], PlanError::BaseImageMissing { image, .. } if image == "frappe/build:v15.1.0"));
}

#[test]
fn site_of_another_project_is_refused() {
    let (d, mut o) = converged();
    if let Some(r) = o.sites[0].record.as_mut() {
        r.project = "other".into();
    }
    insta::assert_snapshot!(errors(&d, &o, PlanOptions::default())[0].to_string());
}

#[test]
fn site_never_migrated_by_benchform_is_migrated_once() {
    let (d, mut o) = converged();
    o.sites[0].record = None;
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn site_left_in_maintenance_is_released() {
    let (d, mut o) = converged();
    o.sites[0].maintenance_mode = true;
    o.sites[0].maintenance_held = true;
    insta::assert_snapshot!(ok(&d, &o));
}

/// Issue 13 §4: maintenance set by hand is not benchform's to lift: no step, unless released.
#[test]
fn maintenance_set_outside_benchform_stays_unless_released() {
    let (d, mut o) = converged();
    o.sites[0].maintenance_mode = true;
    assert_eq!(ok(&d, &o), "(no steps)\n");
    let release = PlanOptions { release_maintenance: vec!["a.example.com".into()], ..Default::default() };
    let p = plan(&d, &o, &release, vec![]).unwrap();
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].id, "maintenance-off:a.example.com");
    assert!(p.steps[0].reason.contains("released by --release-maintenance"), "{}", p.steps[0].reason);
    // Naming a site that is in service, held by benchform, or not in the manifest is refused.
    for (site, why) in [("b.example.com", "the site is in service"), ("zz.example.com", "not a site of the manifest")] {
        let errs = errors(&d, &o, PlanOptions { release_maintenance: vec![site.into()], ..Default::default() });
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().contains(why), "{}", errs[0]);
    }
    // Held by benchform already (a release whose apply failed): asking again is no error.
    o.sites[0].maintenance_held = true;
    assert_eq!(plan(&d, &o, &release, vec![]).unwrap().steps.len(), 1);
    // A scheduler paused by hand alone is drift too, and no step lifts it.
    let (d, mut o) = converged();
    o.sites[1].scheduler_paused = true;
    assert_eq!(ok(&d, &o), "(no steps)\n");
}

/// A scheduler paused by hand (maintenance mode off): a migrate takes the site out of service as
/// usual and puts it back with the scheduler still paused.
#[test]
fn a_scheduler_paused_by_hand_stays_paused_after_a_migrate() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["erpnext"]);
    let mut o = observed(
        NEW,
        vec![
            migrated("a.example.com", &["erpnext", "hrms"], &["erpnext"]),
            migrated("b.example.com", &["erpnext"], &[]),
        ],
    );
    o.sites[1].scheduler_paused = true;
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let off = p.steps.iter().find(|s| s.id == "maintenance-off:b.example.com").unwrap();
    assert_eq!(off.reason, "b.example.com is migrated: serve it again (its scheduler stays paused, as it was found)");
}

/// A site in maintenance set by hand that needs a migrate: backed up and migrated, and left in
/// maintenance (no maintenance-off), the plan saying so.
#[test]
fn a_site_in_maintenance_set_outside_benchform_migrates_and_stays_out_of_service() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["erpnext"]);
    let mut o = observed(
        OLD,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    o.sites[1].maintenance_mode = true;
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn nothing_deployed_but_image_pushed() {
    let (d, mut o) = converged();
    o.containers.clear();
    o.sites.clear();
    o.sites_observed = false;
    o.has_volumes = false;
    insta::assert_snapshot!(ok(&d, &o));
}

/// The backend was stopped or removed on a deployment that has volumes: its sites exist but
/// cannot be read. Deploy first; no site is "new".
#[test]
fn backend_gone_sites_are_not_new() {
    let (d, mut o) = converged();
    o.containers.retain(|c| c.service != "backend");
    o.sites.clear();
    o.sites_observed = false;
    insta::assert_snapshot!(ok(&d, &o));
}

/// A managed site that cannot be read (no site_config.json, or its database unreadable) is
/// blocked with what was observed; the other site is planned as usual.
#[test]
fn a_damaged_site_is_blocked_and_the_others_go_on() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["erpnext"]);
    let mut o = observed(
        NEW,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    o.sites[0].damaged = Some("sites/a.example.com has no site_config.json".into());
    insta::assert_snapshot!(ok(&d, &o));
}

/// Every long-running service of the compose files counts, not only the desired image's; a
/// one-shot service counts only when it did not exit 0.
#[test]
fn stopped_or_missing_services_are_deployed() {
    let (d, mut o) = converged();
    for redis in ["redis-cache", "redis-queue"] {
        let image = Some("redis:6.2-alpine".to_string());
        o.services
            .insert(redis.into(), ServiceSpec { restart: Some("unless-stopped".into()), image, depends_on: vec![] });
    }
    let mut redis = o.containers[0].clone();
    redis.service = "redis-cache".into();
    redis.image = "redis:6.2-alpine".into();
    redis.state = "exited".into();
    redis.exit_code = Some(0);
    o.containers.push(redis);
    let configurator = o.containers.iter_mut().find(|c| c.service == "configurator").unwrap();
    configurator.exit_code = Some(1);
    insta::assert_snapshot!(ok(&d, &o));
}

#[test]
fn every_guard_is_reported_at_once() {
    let d = desired(TWO_SITES, &["erpnext"], &[]);
    let mut o = observed(
        OLD,
        vec![
            migrated("a.example.com", &["erpnext", "hrms"], &["erpnext"]),
            migrated("b.example.com", &["erpnext"], &[]),
        ],
    );
    if let Some(r) = o.sites[1].record.as_mut() {
        r.project = "other".into();
    }
    let d = Desired {
        sites: vec![desired_site("a.example.com", &["erpnext"], &[]), desired_site("b.example.com", &["erpnext"], &[])],
        ..d
    };
    assert_eq!(errors(&d, &o, PlanOptions::default()).len(), 3);
}

#[test]
fn the_plan_only_touches_sites_that_have_the_changed_app() {
    let sites: &[(&str, &[&str])] =
        &[("a.example.com", &["erpnext", "hrms"]), ("b.example.com", &["erpnext"]), ("c.example.com", &["erpnext"])];
    let d = desired(sites, &["erpnext", "hrms"], &["hrms"]);
    let o = observed(OLD, sites.iter().map(|(n, a)| migrated(n, a, &[])).collect());
    let p = plan(&d, &o, &PlanOptions::default(), vec![]).unwrap();
    let kinds: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "build",
            "verify",
            "push",
            "maintenance-on:a.example.com",
            "backup:a.example.com",
            "deploy",
            "refresh-assets",
            "migrate:a.example.com",
            "maintenance-off:a.example.com"
        ]
    );
}

/// `image.build_on: local`: the same steps, and the build's and verify's reasons say that this
/// machine's engine builds and the deploy engine pulls — the plan says where the work happens.
#[test]
fn a_build_on_this_machine_says_so() {
    let sites: &[(&str, &[&str])] = &[("a.example.com", &["erpnext"])];
    let o = observed(OLD, sites.iter().map(|(n, a)| migrated(n, a, &[])).collect());
    let remote = plan(&desired(sites, &["erpnext"], &["erpnext"]), &o, &PlanOptions::default(), vec![]).unwrap();
    let here = Desired { build_local: true, ..desired(sites, &["erpnext"], &["erpnext"]) };
    let local = plan(&here, &o, &PlanOptions::default(), vec![]).unwrap();
    let ids = |p: &benchform_core::plan::Plan| p.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&local), ids(&remote));
    let build = &local.steps[0];
    assert_eq!(build.id, "build");
    assert!(
        build.reason.contains("this machine's engine") && build.reason.contains("pulled by the deploy engine"),
        "{}",
        build.reason
    );
    assert!(!remote.steps[0].reason.contains("this machine"), "{}", remote.steps[0].reason);
    // Built here before, never pushed: verified and pushed from here.
    let mut built = o.clone();
    built.engine_image = Some("sha256:new".into());
    let again = plan(&here, &built, &PlanOptions::default(), vec![]).unwrap();
    assert_eq!(again.steps[0].id, "verify");
    assert!(
        again.steps[0].reason.contains("in this machine's engine but not the registry"),
        "{}",
        again.steps[0].reason
    );
}

/// A blocked site must not end up running new code without its migrate: an image change is
/// refused while a managed site cannot be read.
#[test]
fn a_blocked_site_stops_an_image_change() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["erpnext"]);
    let mut o = observed(
        OLD,
        vec![migrated("a.example.com", &["erpnext", "hrms"], &[]), migrated("b.example.com", &["erpnext"], &[])],
    );
    o.sites[1].damaged = Some("bench could not read its installed apps: Unknown database '_b'".into());
    let errors = errors(&d, &o, PlanOptions::default());
    assert_eq!(errors.len(), 1);
    assert!(matches!(&errors[0], PlanError::BlockedUnderNewImage { site, .. } if site == "b.example.com"));
    assert!(errors[0].to_string().contains("Unknown database '_b'"), "{}", errors[0]);
}

/// Everything stopped and removed (`compose down`), volumes kept, a new image wanted: the sites
/// cannot be read and nothing proves what they run, so no deploy happens under them.
#[test]
fn nothing_running_with_volumes_refuses_a_new_image() {
    let d = desired(TWO_SITES, &["erpnext", "hrms"], &["erpnext"]);
    let mut o = observed(OLD, vec![]);
    o.containers.clear();
    o.sites_observed = false;
    let errors = errors(&d, &o, PlanOptions::default());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| matches!(e, PlanError::BlockedUnderNewImage { .. })));
    assert!(errors[0].to_string().contains("bring the backend back"), "{}", errors[0]);
    // Fresh (no volume, no container): the sites are new.
    o.has_volumes = false;
    assert!(
        plan(&d, &o, &PlanOptions::default(), vec![])
            .unwrap()
            .steps
            .iter()
            .any(|s| s.kind == benchform_core::plan::StepKind::NewSite)
    );
}

/// On a swarm the stack update touches the services whose configuration changed and nothing
/// else: no "runs again" for the configurator, and a changed configuration is the stack's.
#[test]
fn a_swarm_deploy_touches_only_what_changed() {
    let sites: &[(&str, &[&str])] = &[("a.example.com", &["erpnext"])];
    let mut o = observed(NEW, sites.iter().map(|(n, a)| migrated(n, a, &["erpnext"])).collect());
    let backend = o.containers.iter_mut().find(|c| c.service == "backend").unwrap();
    backend.config_hash = Some("old".into());
    let changes = |d: &Desired, o: &Observed| {
        let p = plan(d, o, &PlanOptions::default(), vec![]).unwrap();
        let deploy = p.steps.iter().find(|s| s.id == "deploy").unwrap();
        deploy.service_changes.iter().map(|c| (c.service.clone(), c.reason.clone())).collect::<Vec<_>>()
    };
    let compose = changes(&desired(sites, &["erpnext"], &["erpnext"]), &o);
    assert_eq!(compose[0], ("backend".to_string(), "its compose configuration changed".to_string()));
    assert!(compose.iter().any(|(s, why)| s == "configurator" && why.starts_with("runs again")), "{compose:?}");
    let swarm_desired = Desired { swarm: true, ..desired(sites, &["erpnext"], &["erpnext"]) };
    let swarm = changes(&swarm_desired, &o);
    assert_eq!(swarm, [("backend".to_string(), "its stack configuration changed".to_string())]);
    // Scaled by hand since: said, and put back.
    let backend = o.containers.iter_mut().find(|c| c.service == "backend").unwrap();
    backend.config_hash = Some(format!("{}3 replicas, the files say 2", benchform_core::swarm::CHANGED_BY_HAND));
    let scaled = changes(&swarm_desired, &o);
    assert_eq!(
        scaled[0].1,
        "changed by hand (3 replicas, the files say 2); the deploy puts the files' configuration back"
    );
    // A service the files dropped: the stack deploy removes it (--prune), so it is planned alone.
    let mut orphaned = observed(NEW, sites.iter().map(|(n, a)| migrated(n, a, &["erpnext"])).collect());
    orphaned.containers.push(container("old-worker", NEW));
    assert_eq!(
        changes(&swarm_desired, &orphaned),
        [(
            "old-worker".to_string(),
            "orphan: no longer in the compose files, so the stack deploy removes it".to_string()
        )]
    );
    let compose_plan = plan(&desired(sites, &["erpnext"], &["erpnext"]), &orphaned, &PlanOptions::default(), vec![]);
    assert!(compose_plan.unwrap().steps.is_empty(), "compose lists orphans only with a deploy they ride on");
}
