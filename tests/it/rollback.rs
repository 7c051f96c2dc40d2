//! Rollback by revert, data included, on the world: a release reverted in the manifest brings each
//! site back to the backup benchform took before migrating it, then runs the older code.

use serde_json::Value;

use crate::status::Deployment;

#[test]
fn a_reverted_release_restores_the_pre_upgrade_data_and_says_what_is_lost() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true; // apply deploys; Drop takes the project down
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    d.write_rows("a.localhost", 5);
    let before_upgrade = d.rows("a.localhost");
    let manifest = d.dir.path().join("benchform.yaml");
    let lock = d.dir.path().join("benchform.lock");
    let (manifest_v1, lock_v1) = (std::fs::read(&manifest).unwrap(), std::fs::read(&lock).unwrap());

    d.release(1, "v15.1.0", "v15.2.0");
    let upgrade = d.apply(&["--auto-approve"]);
    assert_eq!(upgrade.code, 0, "{}", upgrade.all());
    // Written on the new release: a rollback to the backup before it loses them.
    d.write_rows("a.localhost", 3);
    assert_ne!(d.rows("a.localhost"), before_upgrade);

    // The revert (what `git revert` of the release commit does to both files).
    std::fs::write(&manifest, &manifest_v1).unwrap();
    std::fs::write(&lock, &lock_v1).unwrap();
    let refused = d.benchform(&["plan"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains("--allow-restore") && refused.stderr.contains("--allow-downgrade"),
        "{}",
        refused.stderr
    );

    let plan = d.benchform(&["plan", "--allow-restore", "-o", "revert.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    for site in ["a.localhost", "b.localhost"] {
        assert!(plan.stdout.contains(&format!("restore          {site}")), "{}", plan.stdout);
    }
    assert!(plan.stdout.contains("everything written since then is lost"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("build "), "the reverted image is in the registry: {}", plan.stdout);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(d.dir.path().join("revert.json")).unwrap()).unwrap();
    assert_eq!(saved["inputs"]["allow_restore"], true);
    let kinds: Vec<&str> = saved["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["site"] == "a.localhost" || s["site"].is_null())
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["maintenance-on", "backup", "restore", "deploy", "refresh-assets", "migrate", "maintenance-off"]
    );
    let restore = saved["steps"].as_array().unwrap().iter().find(|s| s["id"] == "restore:a.localhost").unwrap();
    assert_eq!(restore["destructive"], true);
    let taken_at = restore["restore"]["taken_at"].as_str().unwrap().to_string();
    assert!(restore["reason"].as_str().unwrap().contains(&taken_at));

    let applied = d.apply(&["revert.json"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert!(applied.stdout.contains(&format!("restored from its backup of {taken_at}")), "{}", applied.stdout);
    assert_eq!(d.rows("a.localhost"), before_upgrade, "the site's data is what it was before the upgrade");
    let again = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
}
