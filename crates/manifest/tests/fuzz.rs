//! The fuzz harness for what benchform reads from files people (or attackers) edit: manifests and
//! locks. Each case mutates a valid file (byte flips, insertions of YAML and control characters,
//! deletions, splices, duplicated lines) and checks that reading it never panics, always ends,
//! reports every problem with a position inside the file, accepts only what passes every rule,
//! and never echoes a secret the file holds.
//!
//! CI runs the default number of cases (`PROPTEST_CASES`, 256 here). A longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p benchform-manifest --test fuzz` (figures in
//! docs/security.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use benchform_manifest::{lock::parse_lock, validate};
use proptest::prelude::*;

const MANIFEST: &str = include_str!("../../../manifests/erpnext-india-compliance.yaml");

const LOCK: &str = "version: 1\nentries:\n  - name: \"erpnext\"\n    repo: \"https://github.com/frappe/erpnext\"\n    ref: \"v15.88.1\"\n    kind: tag\n    commit: \"0123456789abcdef0123456789abcdef01234567\"\n    object: \"89abcdef0123456789abcdef0123456789abcdef\"\n  - name: \"frappe\"\n    repo: \"https://github.com/frappe/frappe\"\n    ref: \"v15.88.1\"\n    kind: tag\n    commit: \"fedcba9876543210fedcba9876543210fedcba98\"\n";

/// Pieces worth inserting: YAML syntax, values that break names, control characters, secrets.
const TOKENS: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!str ",
    "'",
    "\"",
    "\n",
    "  ",
    "\t",
    "#",
    "---\n",
    "...\n",
    "\x1b[2K",
    "\u{202e}",
    "\0",
    "../",
    "@",
    ":9977/",
    "ghp_SuperSecretFuzzToken123",
    "x-access-token@evil:1/",
    "https://u:pw-fuzz-secret@h/x",
    "ref: ",
    "name: ",
    "token_env: ",
    "token_user: ",
    "commit: ",
    "\"\"",
    "999999999999999999999",
    "-1",
    "true",
    "null",
    "~",
    "0x1F",
    "1e309",
];

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    DuplicateLine(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(base: &str, edits: &[Edit]) -> Vec<u8> {
    let mut b = base.as_bytes().to_vec();
    for e in edits {
        let at = |i: usize, b: &Vec<u8>| if b.is_empty() { 0 } else { i % (b.len() + 1) };
        match *e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= x;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, t) => {
                let i = at(i, &b);
                b.splice(i..i, TOKENS[t].bytes());
            }
            Edit::Delete(i, n) => {
                let i = at(i, &b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::DuplicateLine(i) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let i = i % lines.len();
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(i, lines[i]);
                    b = out.concat().into_bytes();
                }
            }
            Edit::Truncate(i) => {
                let i = at(i, &b);
                b.truncate(i);
            }
        }
    }
    b
}

/// Every position lies inside the file: a line that exists and a column on it (or just past it).
fn positions_in_bounds(bytes: &[u8], diagnostics: &[benchform_manifest::Diagnostic]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let lines: Vec<&str> = benchform_manifest::validate::yaml_lines(text).collect();
    for d in diagnostics {
        if let Some(line) = d.line {
            let last = lines.len() + usize::from(text.ends_with(['\n', '\r']) || lines.is_empty());
            assert!(line >= 1 && line <= last.max(1), "{}: line {line} of {} lines", d.code, lines.len());
        }
    }
}

/// A secret that stands intact on the line a diagnostic points at (a token, a credential URL) is
/// never shown by it. (Once a mutation has broken its shape, nothing can tell it from other text.)
fn never_echoes_secrets(bytes: &[u8], diagnostics: &[benchform_manifest::Diagnostic]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let lines: Vec<&str> = benchform_manifest::validate::yaml_lines(text).collect();
    for (needle, secret) in
        [("ghp_SuperSecretFuzzToken123", "SuperSecretFuzzToken123"), ("https://u:pw-fuzz-secret@h/x", "pw-fuzz-secret")]
    {
        for d in diagnostics {
            let Some(line) = d.line.and_then(|l| lines.get(l - 1)) else { continue };
            if !line.contains(needle) || lines.iter().filter(|l| l.contains(secret)).count() > 1 {
                continue;
            }
            let shown = format!(
                "{} {} {}",
                d.message,
                d.hint.clone().unwrap_or_default(),
                d.snippet.as_ref().map(|s| s.text.clone()).unwrap_or_default()
            );
            assert!(!shown.contains(secret), "{} echoed a secret: {shown}", d.code);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_are_read_safely(edits in prop::collection::vec(edit(), 1..8)) {
        let bytes = apply(MANIFEST, &edits);
        let v = validate::validate("fuzz.yaml", &bytes);
        positions_in_bounds(&bytes, &v.diagnostics);
        never_echoes_secrets(&bytes, &v.diagnostics);
        let errors = v.diagnostics.iter().any(|d| d.is_error());
        if let Some(m) = v.manifest.as_ref().filter(|_| !errors) {
            // Accepted: every name that reaches a command or a URL obeys its rule.
            prop_assert!(benchform_manifest::names::is_project_name(&m.project));
            for a in &m.apps {
                prop_assert!(benchform_manifest::names::is_identifier(&a.name));
                prop_assert!(benchform_manifest::names::is_token_user(a.token_user()));
                prop_assert!(a.token_env.as_deref().is_none_or(benchform_manifest::names::is_upper_env_name));
            }
            for s in &m.sites {
                prop_assert!(benchform_manifest::names::site_name_problem(&s.name).is_none());
            }
        }
    }

    #[test]
    fn mutated_locks_are_read_safely(edits in prop::collection::vec(edit(), 1..8)) {
        let bytes = apply(LOCK, &edits);
        match parse_lock("benchform.lock", &bytes) {
            Ok(lock) => {
                for e in &lock.entries {
                    prop_assert!(benchform_manifest::names::is_object_id(&e.commit), "{:?}", e.commit);
                    prop_assert!(e.object.as_deref().is_none_or(benchform_manifest::names::is_object_id));
                    prop_assert!(e.name == "frappe" || benchform_manifest::names::is_identifier(&e.name));
                    prop_assert!(benchform_manifest::names::git_ref_problem(&e.git_ref).is_none());
                }
                let mut names: Vec<&str> = lock.entries.iter().map(|e| e.name.as_str()).collect();
                names.sort_unstable();
                let n = names.len();
                names.dedup();
                prop_assert_eq!(n, names.len(), "duplicate entries accepted");
            }
            Err(diagnostics) => {
                prop_assert!(!diagnostics.is_empty());
                positions_in_bounds(&bytes, &diagnostics);
                never_echoes_secrets(&bytes, &diagnostics);
            }
        }
    }
}
