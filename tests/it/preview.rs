//! The migrate preview on the world: what a plan says each migrate will run (from the app
//! repositories at the locked commits, before any image is built, minus each site's Patch Log)
//! is what the migrate then runs.

use serde_json::Value;

use crate::status::Deployment;

/// The `migrate` step of `site` in a JSON plan.
fn migrate_step<'a>(plan: &'a Value, site: &str) -> &'a Value {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "migrate" && s["site"] == site)
        .unwrap_or_else(|| panic!("no migrate step for {site}: {plan:#}"))
}

fn patch_names(preview: &Value) -> Vec<String> {
    preview["patches"].as_array().unwrap().iter().map(|p| p["patch"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_plan_previews_the_patches_each_migrate_runs_and_says_when_it_cannot() {
    let mut d = Deployment::with_private_hrms(&[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext", "hrms"])]);
    d.deployed = true; // apply deploys; Drop takes the project down
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());

    d.release(2, "v1.0.0", "v1.1.0");
    // Someone ran one of the new patches by hand on b already: the preview leaves it out.
    let b_db = d.db_name("b.localhost");
    d.sql(&format!(
        "INSERT INTO `{b_db}`.`tabPatch Log` (name, creation, patch, skipped) VALUES ('byhand01', NOW(6), 'hrms.patches.v1_1_0.before_sync', 0)"
    ));
    let plan = d.benchform(&["plan", "--format", "json", "-o", "release.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let preview = &migrate_step(&plan, "b.localhost")["preview"];
    assert_eq!(patch_names(preview), ["hrms.patches.v1_1_0.after_sync"], "{preview:#}");
    assert_eq!(preview["patches"][0]["app"], "hrms");
    assert_eq!(preview["patches"][0]["phase"], "post_model_sync");
    assert_eq!(preview["doctypes_changed"], 1, "{preview:#}");
    assert!(preview["source"].as_str().unwrap().contains("locked commit"));
    assert!(preview.get("unknown").is_none(), "{preview:#}");
    // The saved plan carries it too; only b migrates.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(d.dir.path().join("release.json")).unwrap()).unwrap();
    assert_eq!(patch_names(&migrate_step(&saved, "b.localhost")["preview"]), ["hrms.patches.v1_1_0.after_sync"]);
    assert!(!plan["steps"].as_array().unwrap().iter().any(|s| s["site"] == "a.localhost"));

    // Text and markdown say the same.
    let text = d.benchform(&["plan"]);
    assert!(
        text.stdout.contains("patches: 1 to run: hrms.patches.v1_1_0.after_sync; DocTypes changed: 1"),
        "{}",
        text.stdout
    );
    let md = d.benchform(&["plan", "--format", "markdown"]);
    assert!(
        md.stdout.contains("<details><summary>What migrate will run (1 patch(es) on 1 site(s))</summary>"),
        "{}",
        md.stdout
    );
    assert!(md.stdout.contains("  - hrms (post_model_sync):\n    - `hrms.patches.v1_1_0.after_sync`"), "{}", md.stdout);

    // Without the token (and a cache that has not fetched the commits yet: once fetched they are
    // read offline) the private app's code cannot be read: the preview says so, the plan stands
    // (pull-request CI plans without production secrets).
    let empty_cache = tempfile::tempdir().unwrap();
    let cache = empty_cache.path().display().to_string();
    let no_token = crate::support::benchform_in(
        d.dir.path(),
        &["plan", "--format", "json"],
        &[("BENCHFORM_CACHE_DIR", cache.as_str())],
    );
    assert_eq!(no_token.code, 0, "{}", no_token.all());
    let plan: Value = serde_json::from_str(&no_token.stdout).unwrap();
    let preview = &migrate_step(&plan, "b.localhost")["preview"];
    assert!(preview["patches"].is_null(), "{preview:#}");
    let unknown = preview["unknown"].to_string();
    assert!(
        unknown.contains("hrms") && unknown.contains("credentials") && unknown.contains("APP_TOKEN is not set"),
        "{unknown}"
    );
    assert!(!no_token.all().contains(d.world.var("BENCHFORM_WORLD_GIT_TOKEN")));

    // What the migrate runs is what the preview listed.
    let before: Vec<String> = d.sql(&format!("SELECT patch FROM `{b_db}`.`tabPatch Log` ORDER BY creation"));
    let applied = d.apply(&["release.json"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    let after: Vec<String> = d.sql(&format!("SELECT patch FROM `{b_db}`.`tabPatch Log` ORDER BY creation"));
    let ran: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(ran, ["hrms.patches.v1_1_0.after_sync"]);
    let again = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
}
