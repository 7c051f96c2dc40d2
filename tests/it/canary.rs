//! The canary wave on the world: the canary migrates (and passes its smoke test) in a one-off
//! container of the new image while the other sites keep serving on the old one; a failed canary
//! leaves them untouched on the old image, and the next apply after a fix converges.

use serde_json::Value;

use crate::status::{Deployment, site};

/// The image the backend service runs, and whether `site` is in maintenance mode.
fn serving(d: &Deployment, name: &str) -> (String, bool) {
    let status = d.status(&[]);
    let backend = status["services"].as_array().unwrap().iter().find(|s| s["service"] == "backend").unwrap();
    (backend["image"].as_str().unwrap().to_string(), site(&status, name)["maintenance_mode"] == true)
}

fn canary_containers(d: &Deployment) -> Vec<String> {
    let out = std::process::Command::new(d.world.docker_cli())
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter", &format!("name={}-benchform-canary", d.project)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn a_canary_goes_first_and_a_failed_one_leaves_the_others_on_the_old_image() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true; // apply deploys; Drop takes the project down
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}rollout:\n  canary: [b.localhost]\n  smoke: [test, '!', -e, 'sites/{{site}}/.smoke-fail']\n"),
    )
    .unwrap();
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let (old_image, _) = serving(&d, "a.localhost");
    d.write_rows("b.localhost", 3);
    let b_rows = d.rows("b.localhost");

    d.release(1, "v15.1.0", "v15.2.0");
    let plan = d.benchform(&["plan", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let canary: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["canary"] == true)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(canary, ["migrate:b.localhost", "smoke:b.localhost"]);
    let text = d.benchform(&["plan"]);
    assert!(text.stdout.contains("-- canary wave: b.localhost first, on the new image"), "{}", text.stdout);

    // 1. The canary's migrate fails: it is restored, a never left service, nothing was deployed.
    d.fault("b.localhost", "migrate=fail\n");
    let failed = d.apply(&["--auto-approve"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.all().contains("it was the canary: the new image was not deployed"), "{}", failed.all());
    assert_eq!(serving(&d, "a.localhost"), (old_image.clone(), false), "a serves on the old image");
    assert!(serving(&d, "b.localhost").1, "the canary stays in maintenance");
    assert_eq!(d.rows("b.localhost"), b_rows);
    assert!(canary_containers(&d).is_empty(), "the canary container is gone");
    d.fault("b.localhost", "");

    // 2. Its migrate passes but its smoke test fails: restored too, and migrated again next time.
    let marker = "/home/frappe/frappe-bench/sites/b.localhost/.smoke-fail";
    let touch = |args: &[&str]| {
        let out = std::process::Command::new(d.world.docker_cli())
            .args(["exec", "-u", "frappe", &d.backend()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    touch(&["touch", marker]);
    let failed = d.apply(&["--auto-approve"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.all().contains("the smoke test of canary b.localhost failed"), "{}", failed.all());
    let recorded = d.status(&[]);
    let recorded = site(&recorded, "b.localhost")["recorded_fingerprint"].as_str().unwrap_or_default().to_string();
    assert!(recorded.starts_with("pending:"), "a canary is recorded pending until its smoke test passes: {recorded}");
    assert_eq!(serving(&d, "a.localhost"), (old_image.clone(), false));
    assert_eq!(d.rows("b.localhost"), b_rows);
    touch(&["rm", marker]);

    // 3. Fixed: the canary passes, the new image goes out, everything converges.
    let passed = d.apply(&["--auto-approve", "-v"]);
    assert_eq!(passed.code, 0, "{}", passed.all());
    let order: Vec<&str> = passed.stdout.lines().filter_map(|l| l.strip_prefix("→ ")).collect();
    let at = |id: &str| order.iter().position(|l| *l == id).unwrap_or_else(|| panic!("{id} not run: {order:?}"));
    assert!(at("smoke b.localhost") < at("maintenance-on a.localhost"), "{order:?}");
    assert!(at("maintenance-on a.localhost") < at("deploy"), "{order:?}");
    let (new_image, _) = serving(&d, "a.localhost");
    assert_ne!(new_image, old_image);
    assert!(!serving(&d, "b.localhost").1 && !serving(&d, "a.localhost").1);
    assert!(canary_containers(&d).is_empty());
    // The canary's migrate and smoke test ran in the one-off container, the others' in the backend.
    let canary = format!("container={}-benchform-canary command=", d.project);
    let ran_in_canary = |command: &str| passed.stderr.lines().any(|l| l.contains(&format!("{canary}{command}")));
    assert!(ran_in_canary("bench --site b.localhost migrate"), "{}", passed.stderr);
    assert!(ran_in_canary("test ! -e sites/b.localhost/.smoke-fail"), "{}", passed.stderr);
    assert!(!ran_in_canary("bench --site a.localhost migrate"), "{}", passed.stderr);
    let again = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
}
