//! The bad-manifest corpus: every file under tests/corpus/bad fails validation with exact
//! diagnostics (snapshotted as text and JSON); tests/corpus/warn passes with warnings only.

use std::collections::BTreeSet;

use benchform_manifest::Code;
use serde_json::Value;

use crate::support::{benchform, root};

fn corpus(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests/corpus").join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// Codes whose diagnostics have no position: there is none to give.
const UNPLACED: &[&str] = &["not-utf8", "manifest-not-found", "empty-manifest"];

fn check_corpus(dir: &str, want_exit: i32, seen: &mut BTreeSet<String>) -> usize {
    let files = corpus(dir);
    for name in &files {
        let rel = format!("tests/corpus/{dir}/{name}");
        let text = benchform(&["validate", "-f", &rel]);
        let json = benchform(&["validate", "-f", &rel, "--format", "json"]);
        assert_eq!(text.code, want_exit, "{rel}: text exit code\n{}", text.all());
        assert_eq!(json.code, want_exit, "{rel}: json exit code\n{}", json.all());
        let doc: Value = serde_json::from_str(&json.stdout).unwrap();
        crate::support::assert_matches_schema(&doc, "validate.schema.json");
        assert_eq!(doc["valid"], Value::Bool(want_exit == 0), "{rel}");
        let diagnostics = doc["diagnostics"].as_array().unwrap();
        assert!(!diagnostics.is_empty(), "{rel}: no diagnostics");
        for d in diagnostics {
            let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["severity", "code", "message", "file", "line", "column", "hint"], "{rel}");
            let code = d["code"].as_str().unwrap();
            assert_eq!(d["line"].is_null(), UNPLACED.contains(&code), "{rel}: position of {code}");
            assert_eq!(d["file"], rel.as_str());
            seen.insert(code.to_string());
        }
        let stem = name.trim_end_matches(".yaml");
        insta::assert_snapshot!(format!("{dir}__{stem}__text"), text.stdout);
        insta::assert_snapshot!(format!("{dir}__{stem}__json"), json.stdout);
    }
    files.len()
}

#[test]
fn every_bad_manifest_fails_with_exact_diagnostics() {
    let mut seen = BTreeSet::new();
    let bad = check_corpus("bad", 1, &mut seen);
    assert!(bad >= 30, "the corpus must hold at least 30 bad manifests, has {bad}");
    check_corpus("warn", 0, &mut seen);
    let missing = benchform(&["validate", "-f", "tests/corpus/none.yaml", "--format", "json"]);
    assert_eq!(missing.code, 1);
    let doc: Value = serde_json::from_str(&missing.stdout).unwrap();
    assert_eq!(doc["diagnostics"][0]["code"], "manifest-not-found");
    assert!(doc["diagnostics"][0]["line"].is_null());
    seen.insert("manifest-not-found".to_string());

    // Every manifest diagnostic code is exercised somewhere (lock codes are tested in `lock`).
    let untested: Vec<&str> = Code::ALL
        .iter()
        .take_while(|c| **c != Code::LockMissing)
        .map(|c| c.as_str())
        .filter(|c| !["read-failed", "schema"].contains(c) && !seen.contains(*c))
        .collect();
    assert!(untested.is_empty(), "codes without a corpus case: {untested:?}");
}

#[test]
fn secrets_in_bad_manifests_are_never_echoed() {
    for (file, secrets) in [
        ("credentials-in-url", &["ghp_SuperSecretToken123"][..]),
        ("user-password-in-url", &["hunter2-secret", "deploy:"][..]),
        ("token-pasted-into-token-env", &["ghp_abcdefghijklmnopqrstuvwxyz0123456789"][..]),
        ("password-in-env-field", &["Sup3rS3cretRootPw"][..]),
    ] {
        let rel = format!("tests/corpus/bad/{file}.yaml");
        for format in ["text", "json"] {
            let run = benchform(&["validate", "-f", &rel, "--format", format]);
            assert_eq!(run.code, 1);
            for secret in secrets {
                assert!(!run.all().contains(secret), "{rel} ({format}) printed a secret:\n{}", run.all());
            }
        }
    }
}

/// Nothing a manifest holds reaches the terminal raw: no control character but newline (and the
/// tab of a snippet) in any output, text or JSON.
#[test]
fn control_characters_in_manifests_are_escaped() {
    for file in ["control-characters", "control-characters-raw"] {
        let rel = format!("tests/corpus/bad/{file}.yaml");
        for format in ["text", "json"] {
            let run = benchform(&["validate", "-f", &rel, "--format", format]);
            assert_eq!(run.code, 1);
            let bad: Vec<char> = run.all().chars().filter(|c| c.is_control() && *c != '\n' && *c != '\t').collect();
            assert!(bad.is_empty(), "{rel} ({format}) printed {bad:?}:\n{}", run.all());
            assert!(!run.all().contains('\u{202e}'), "{rel} ({format})");
        }
    }
}

/// A `token_user` that ends the URL's user part (`x@evil:port/`) would send the token to another
/// host: every command that could use the token refuses the manifest, and nothing connects to that
/// host.
#[test]
fn a_token_user_cannot_redirect_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/corpus/bad/token-user-redirect.yaml")
        .unwrap()
        .replace("127.0.0.1:9977", &format!("127.0.0.1:{port}"))
        .replace("https://github.com/frappe/hrms", "http://127.0.0.1:1/private/hrms");
    std::fs::write(dir.path().join("benchform.yaml"), text).unwrap();
    for args in [&["validate"][..], &["lock"], &["plan"], &["apply", "--auto-approve"], &["status"]] {
        let run = crate::support::benchform_in(dir.path(), args, &[("HRMS_TOKEN", "tok-SECRET-1")]);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        assert!(run.all().contains("invalid-token-user"), "{args:?}: {}", run.all());
        assert!(!run.all().contains("tok-SECRET-1"));
        assert!(listener.accept().is_err(), "{args:?} connected to the token_user's host");
    }
}

#[test]
fn a_missing_manifest_says_where_it_looked_and_mentions_f() {
    let dir = tempfile::tempdir().unwrap();
    let run = crate::support::benchform_in(dir.path(), &["validate"], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("error[manifest-not-found]"), "{}", run.stdout);
    assert!(run.stdout.contains(&dir.path().join("benchform.yaml").display().to_string()));
    assert!(run.stdout.contains("-f FILE"));
}
