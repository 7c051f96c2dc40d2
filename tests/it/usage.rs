//! Exit codes of the command line itself.

use crate::support::benchform;

#[test]
fn usage_errors_exit_1_not_clap_s_2() {
    for args in [
        &["validate", "--format", "yaml"][..],
        &["no-such-command"][..],
        &["lock", "--offline"][..],
        &["lock", "--check", "--update"][..],
    ] {
        let run = benchform(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        assert!(!run.stderr.is_empty());
    }
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(benchform(&["--help"]).code, 0);
    assert_eq!(benchform(&["--version"]).code, 0);
    let help = benchform(&["validate", "--help"]);
    assert!(help.stdout.contains("Example: benchform validate"), "{}", help.stdout);
}

#[test]
fn valid_manifests_exit_0() {
    for entry in std::fs::read_dir(crate::support::root().join("manifests")).unwrap() {
        let path = entry.unwrap().path();
        let rel = format!("manifests/{}", path.file_name().unwrap().to_string_lossy());
        let run = benchform(&["validate", "-f", &rel, "--format", "json"]);
        assert_eq!(run.code, 0, "{rel}: {}", run.stdout);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["valid"], true);
    }
}
