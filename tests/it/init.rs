//! `benchform init`: a draft manifest from frappe_docker's apps.json and env file, with nothing
//! secret copied and nothing overwritten; `benchform completions`.

use crate::support::{benchform, benchform_in};

const TOKEN: &str = "glpat-Init0Token0For0Tests";
const DB_PASSWORD: &str = "db-password-from-the-env-file";

fn inputs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("frappe_docker/overrides")).unwrap();
    for f in [
        "compose.yaml",
        "overrides/compose.mariadb.yaml",
        "overrides/compose.redis.yaml",
        "overrides/compose.noproxy.yaml",
    ] {
        std::fs::write(dir.join("frappe_docker").join(f), "services: {}\n").unwrap();
    }
    // Like upstream's, the base file's services run ${CUSTOM_IMAGE}:${CUSTOM_TAG}.
    std::fs::write(
        dir.join("frappe_docker/compose.yaml"),
        "services:\n  backend:\n    image: ${CUSTOM_IMAGE}:${CUSTOM_TAG}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("frappe_docker/images/layered")).unwrap();
    std::fs::write(dir.join("frappe_docker/images/layered/Containerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        dir.join("frappe_docker/apps.json"),
        format!(
            r#"[
  {{"url": "https://github.com/frappe/erpnext", "branch": "v15.88.1"}},
  {{"url": "https://oauth2:{TOKEN}@git.example.com/acme/acme-customisations.git", "branch": "v1.4.0"}}
]"#
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("erp")).unwrap();
    std::fs::write(
        dir.join("erp/production.env"),
        format!(
            "# frappe_docker env\nERPNEXT_VERSION=v15.88.1\nDB_PASSWORD={DB_PASSWORD}\nCUSTOM_IMAGE=registry.example.com/acme/erpnext\nSITES=`erp.example.com`,`staging.example.com`\n"
        ),
    )
    .unwrap();
}

#[test]
fn init_drafts_a_valid_manifest_without_secrets_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    inputs(tmp.path());
    let erp = tmp.path().join("erp");
    let args = [
        "init",
        "--from-apps-json",
        "../frappe_docker/apps.json",
        "--env-file",
        "production.env",
        "--context",
        "../frappe_docker",
        "--project",
        "erp-prod",
        "--frappe-ref",
        "v15.88.1",
    ];
    let run = benchform_in(&erp, &args, &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("export the token in ACME_CUSTOMISATIONS_TOKEN"), "{}", run.stdout);
    let manifest = std::fs::read_to_string(erp.join("benchform.yaml")).unwrap();
    for secret in [TOKEN, DB_PASSWORD] {
        assert!(!manifest.contains(secret) && !run.all().contains(secret), "a secret was copied");
    }
    assert!(manifest.contains("repository: \"registry.example.com/acme/erpnext\""), "{manifest}");
    assert!(manifest.contains("- name: \"staging.example.com\""), "{manifest}");
    assert!(manifest.contains("env_file: \"../erp/production.env\""), "{manifest}");
    assert!(manifest.contains("token_env: ACME_CUSTOMISATIONS_TOKEN"), "{manifest}");
    assert!(manifest.contains("token_user: \"oauth2\""), "GitLab's user name is kept: {manifest}");
    let validate = benchform_in(&erp, &["validate"], &[]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    assert!(validate.stdout.contains("is valid (0 warnings)"), "{}", validate.stdout);

    // Never overwritten without --force; with it, replaced.
    std::fs::write(erp.join("benchform.yaml"), "mine\n").unwrap();
    let again = benchform_in(&erp, &args, &[]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("benchform.yaml exists") && again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(erp.join("benchform.yaml")).unwrap(), "mine\n");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_eq!(benchform_in(&erp, &forced, &[]).code, 0);
    assert_eq!(std::fs::read_to_string(erp.join("benchform.yaml")).unwrap(), manifest);
}

#[test]
fn bad_inputs_to_init_are_named_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    inputs(tmp.path());
    let erp = tmp.path().join("erp");
    let cases = [
        ("{\n  \"url\": oops\n}", "apps.json:2:"),
        ("{\"url\": \"https://x/y\"}", "expected a list"),
        ("[{\"url\": \"https://github.com/frappe/hrms\"}]", "entry 1 has no text `branch`"),
        ("[{\"url\": \"git@github.com:frappe/hrms.git\", \"branch\": \"v1\"}]", "uses SSH"),
        (
            "[{\"url\": \"https://a/hrms\", \"branch\": \"v1\"}, {\"url\": \"https://b/hrms\", \"branch\": \"v2\"}]",
            "hrms is listed twice",
        ),
    ];
    for (apps, expected) in cases {
        std::fs::write(tmp.path().join("apps.json"), apps).unwrap();
        let run = benchform_in(&erp, &["init", "--from-apps-json", "../apps.json"], &[]);
        assert_eq!(run.code, 1, "{apps}: {}", run.all());
        assert!(run.stderr.contains(expected), "{apps}: {}", run.stderr);
        assert!(run.stderr.contains("Nothing was written."), "{}", run.stderr);
        assert!(!erp.join("benchform.yaml").exists());
    }
    let missing = benchform_in(&erp, &["init", "--from-apps-json", "nope.json"], &[]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("cannot read nope.json"), "{}", missing.stderr);
    let bad_project =
        benchform_in(&erp, &["init", "--from-apps-json", "../frappe_docker/apps.json", "--project", "Bad Name"], &[]);
    assert_eq!(bad_project.code, 1);
    assert!(bad_project.stderr.contains("cannot be a compose project name"), "{}", bad_project.stderr);
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef benchform"), ("fish", "complete -c benchform")] {
        let run = benchform(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.all());
        assert!(run.stdout.contains(marker), "{shell}: {}", &run.stdout[..run.stdout.len().min(300)]);
        assert!(run.stdout.contains("force-unlock"), "{shell} completes every command");
    }
    assert_eq!(benchform(&["completions", "tcsh"]).code, 1);
}
