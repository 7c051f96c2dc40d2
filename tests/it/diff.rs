//! `benchform diff --base REV` in a real git repository, with no engine, registry or secret.

use std::path::Path;
use std::process::Command;

use crate::support::benchform_in;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn manifest(hrms_ref: &str, sites: &str, allow_uninstall: bool) -> String {
    format!(
        "version: 1\nproject: prod\nfrappe: {{repo: https://h/frappe, ref: v15.1.0}}\napps:\n  - {{name: erpnext, repo: https://h/erpnext, ref: v15.1.0}}\n  - {{name: hrms, repo: https://h/hrms, ref: {hrms_ref}}}\nimage: {{repository: r.example.com/prod, containerfile: C, context: .}}\ndeploy: {{compose: {{files: [compose.yaml]}}}}\nsites:\n{sites}policy: {{allow_uninstall: {allow_uninstall}}}\n"
    )
}

fn lock(hrms_ref: &str, hrms_commit: char) -> String {
    let entry = |name: &str, r: &str, c: char| {
        format!(
            "  - name: \"{name}\"\n    repo: \"https://h/{name}\"\n    ref: \"{r}\"\n    kind: tag\n    commit: \"{}\"\n",
            c.to_string().repeat(40)
        )
    };
    format!(
        "version: 1\nentries:\n{}{}{}",
        entry("erpnext", "v15.1.0", 'e'),
        entry("frappe", "v15.1.0", 'f'),
        entry("hrms", hrms_ref, hrms_commit)
    )
}

#[test]
fn diff_shows_the_desired_state_change_for_a_pull_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    let two_sites = "  - {name: a.example.com, apps: [erpnext, hrms]}\n  - {name: b.example.com, apps: [erpnext]}\n";
    std::fs::write(d.join("benchform.yaml"), manifest("v1.0.0", two_sites, false)).unwrap();
    std::fs::write(d.join("benchform.lock"), lock("v1.0.0", 'a')).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "first"]);

    let same = benchform_in(d, &["diff", "--base", "HEAD", "--detailed-exitcode"], &[]);
    assert_eq!(same.code, 0, "{}", same.all());
    assert_eq!(same.stdout, "No changes to the desired state since HEAD.\n");

    let three_sites = "  - {name: a.example.com, apps: [erpnext, hrms]}\n  - {name: b.example.com, apps: [erpnext, hrms]}\n  - {name: c.example.com, apps: [erpnext]}\n";
    std::fs::write(d.join("benchform.yaml"), manifest("v1.1.0", three_sites, true)).unwrap();
    std::fs::write(d.join("benchform.lock"), lock("v1.1.0", 'b')).unwrap();
    git(d, &["commit", "-q", "-am", "release"]);

    let md = benchform_in(d, &["diff", "--base", "HEAD~1", "--format", "markdown", "--detailed-exitcode"], &[]);
    assert_eq!(md.code, 2, "{}", md.all());
    insta::assert_snapshot!(md.stdout);

    let json = benchform_in(d, &["diff", "--base", "HEAD~1", "--format", "json"], &[]);
    assert_eq!(json.code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    crate::support::assert_matches_schema(&doc, "diff.schema.json");
    let kinds: Vec<&str> = doc["changes"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "app-repinned",
            "image-rebuilt",
            "site-migrates",
            "site-app-added",
            "site-migrates",
            "site-added",
            "policy-changed"
        ]
    );

    let text = benchform_in(d, &["diff", "--base", "HEAD~1"], &[]);
    assert!(text.stdout.contains("sites that will migrate: a.example.com, b.example.com"), "{}", text.stdout);

    let bad = benchform_in(d, &["diff", "--base", "no-such-rev"], &[]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("`no-such-rev` is not a revision"), "{}", bad.stderr);

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("benchform.yaml"), manifest("v1.0.0", two_sites, false)).unwrap();
    std::fs::write(outside.path().join("benchform.lock"), lock("v1.0.0", 'a')).unwrap();
    let norepo = benchform_in(outside.path(), &["diff", "--base", "HEAD"], &[]);
    assert_eq!(norepo.code, 1);
    assert!(norepo.stderr.contains("is not in a git repository"), "{}", norepo.stderr);
}
