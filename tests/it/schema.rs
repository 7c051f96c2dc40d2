//! The checked-in schemas are what `benchform schema` prints, and every example manifest
//! validates against them.

use serde_json::Value;

use crate::support::{benchform, root};

fn checked_in(name: &str) -> String {
    std::fs::read_to_string(root().join("schema").join(name)).unwrap()
}

#[test]
fn checked_in_schemas_are_fresh() {
    for (kind, file) in [
        ("manifest", "benchform.schema.json"),
        ("lock", "benchform.lock.schema.json"),
        ("plan", "plan.schema.json"),
        ("apply-events", "apply-events.schema.json"),
        ("diff", "diff.schema.json"),
        ("status", "status.schema.json"),
        ("validate", "validate.schema.json"),
        ("history", "history.schema.json"),
    ] {
        let run = benchform(&["schema", kind]);
        assert_eq!(run.code, 0);
        assert!(
            run.stdout == checked_in(file),
            "schema/{file} is stale: run `cargo run -q -- schema {kind} > schema/{file}`"
        );
    }
}

fn yaml_to_json(text: &str) -> Value {
    let parsed = benchform_manifest::yaml::parse(text);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    parsed.root.unwrap().to_json()
}

#[test]
fn example_manifests_validate_against_the_schema_and_point_editors_at_it() {
    let schema: Value = serde_json::from_str(&checked_in("benchform.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("manifests")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/benchform.schema.json\n"),
            "{} lacks the yaml-language-server $schema comment on its first line",
            path.display()
        );
        let errors: Vec<String> = validator.iter_errors(&yaml_to_json(&text)).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        count += 1;
    }
    assert!(count >= 2);
}

#[test]
fn the_schema_rejects_what_validate_rejects_structurally() {
    let schema: Value = serde_json::from_str(&checked_in("benchform.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for bad in [
        "unknown-field",
        "missing-field",
        "ref-as-number",
        "invalid-enum",
        "unsupported-version",
        "invalid-project",
        "invalid-app-name",
    ] {
        let text = std::fs::read_to_string(root().join(format!("tests/corpus/bad/{bad}.yaml"))).unwrap();
        assert!(!validator.is_valid(&yaml_to_json(&text)), "the schema accepts tests/corpus/bad/{bad}.yaml");
    }
}

#[test]
fn schema_errors_point_at_the_yaml_line_and_column() {
    // tests/corpus/bad/unknown-field.yaml: `reff:` on line 9, indented by four.
    let run = benchform(&["validate", "-f", "tests/corpus/bad/unknown-field.yaml", "--format", "json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("unknown-field"), Some(9), Some(5))
    );
    assert_eq!(d["hint"], "did you mean `ref`?");
    // And a missing field points at the mapping that lacks it.
    let run = benchform(&["validate", "-f", "tests/corpus/bad/missing-field.yaml", "--format", "json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("missing-field"), Some(14), Some(3))
    );
}

/// `version`, `apps[].token_env`, … for every property in the manifest schema.
/// Every field of the schema as a dotted path (`apps[].name`), with its default if it has one.
fn field_paths(root: &Value, schema: &Value, prefix: &str, out: &mut Vec<(String, Option<Value>)>) {
    let resolve = |s: &Value| -> Value {
        match s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(p) => root.pointer(p).unwrap().clone(),
            None => s.clone(),
        }
    };
    let schema = resolve(schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            let resolved = resolve(sub);
            out.push((path.clone(), sub.get("default").or_else(|| resolved.get("default")).cloned()));
            if let Some(items) = resolved.get("items") {
                field_paths(root, items, &format!("{path}[]"), out);
            } else {
                field_paths(root, &resolved, &path, out);
            }
        }
    }
}

#[test]
fn every_manifest_field_is_documented() {
    let schema: Value = serde_json::from_str(&checked_in("benchform.schema.json")).unwrap();
    let mut with_defaults = Vec::new();
    field_paths(&schema, &schema, "", &mut with_defaults);
    let fields: Vec<String> = with_defaults.iter().map(|(f, _)| f.clone()).collect();
    assert!(fields.len() > 25, "{fields:?}");
    let doc = std::fs::read_to_string(root().join("docs/manifest.md")).unwrap();
    // The default column shows the schema's default for every field that has a simple one.
    let mut checked = 0;
    for (field, default) in &with_defaults {
        let shown = match default {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) if a.is_empty() => "[]".to_string(),
            Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
            _ => continue,
        };
        let row = doc.lines().find(|l| l.starts_with(&format!("| `{field}` |"))).unwrap_or_default();
        let cell = row.split('|').nth(3).unwrap_or_default();
        assert!(
            cell.contains(&format!("`{shown}`")),
            "docs/manifest.md: `{field}` defaults to `{shown}`, the doc says {cell:?}"
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} defaults checked");
    let undocumented: Vec<&String> = fields
        .iter()
        .filter(|f| {
            !["frappe", "image", "deploy", "deploy.compose", "backups", "policy", "rollout"].contains(&f.as_str())
        })
        .filter(|f| !doc.contains(&format!("| `{f}` |")))
        .collect();
    assert!(undocumented.is_empty(), "docs/manifest.md lacks rows for {undocumented:?}");
}

#[test]
fn every_diagnostic_code_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/validate.md")).unwrap();
    let missing: Vec<&str> = benchform_manifest::Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !doc.contains(&format!("| `{c}` |")))
        .collect();
    assert!(missing.is_empty(), "docs/validate.md lacks {missing:?}");
}

#[test]
fn every_contract_trap_is_mapped_to_tests_that_exist() {
    let doc = std::fs::read_to_string(root().join("docs/traps.md")).unwrap();
    let rows: Vec<u32> = doc.lines().filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(rows, (1..=21).collect::<Vec<_>>(), "one row per trap of frappe-contract §10, in order");
    // Every backticked snake_case name of four or more words must be a test function somewhere.
    let mut sources = String::new();
    let mut stack = vec![root().join("crates"), root().join("tests"), root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let names: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| {
            n.split('_').count() >= 4 && n.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    assert!(names.len() > 20, "{names:?}");
    let unknown: Vec<&&str> = names.iter().filter(|n| !sources.contains(&format!("fn {n}("))).collect();
    assert!(unknown.is_empty(), "docs/traps.md names tests that do not exist: {unknown:?}");
}

#[test]
fn the_plans_in_operations_md_are_the_planner_s() {
    const KINDS: [&str; 13] = [
        "build",
        "verify",
        "push",
        "maintenance-on",
        "backup",
        "restore",
        "uninstall-app",
        "deploy",
        "refresh-assets",
        "new-site",
        "install-app",
        "migrate",
        "maintenance-off",
    ];
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let snapshots = root().join("crates/core/tests/snapshots");
    let mut test: Option<String> = None;
    // Inside a fenced block: whether it is a plan (no language) and its lines.
    let mut block: Option<(bool, Vec<&str>)> = None;
    let mut checked = 0;
    for line in doc.lines() {
        let fence = line.trim_start().strip_prefix("```");
        if let Some((is_plan, lines)) = &mut block {
            if fence.is_none() {
                lines.push(line);
                continue;
            }
            let (is_plan, lines) = (*is_plan, std::mem::take(lines));
            block = None;
            if !is_plan {
                continue;
            }
            // A plan block: its steps, in order, are among the named snapshot's, and every
            // reason it spells out in full is the planner's.
            let name = test.clone().unwrap_or_else(|| panic!("a plan block in operations.md names no test: {lines:?}"));
            let snap = std::fs::read_to_string(snapshots.join(format!("plan__{name}.snap"))).unwrap();
            let snap_kinds: Vec<&str> = snap
                .lines()
                .filter_map(|l| l.trim_start_matches(['!', ' ']).split([':', ' ']).next())
                .filter(|k| KINDS.contains(k))
                .collect();
            let mut at = 0;
            for l in &lines {
                let parts: Vec<&str> = l.split("  ").map(str::trim).filter(|p| !p.is_empty()).collect();
                let Some(kind) = parts.iter().find(|p| KINDS.contains(p)) else { continue };
                let found = snap_kinds[at..].iter().position(|k| k == kind);
                assert!(found.is_some(), "operations.md ({name}): `{kind}` is not next in the planner's plan:\n{snap}");
                at += found.unwrap() + 1;
                let reason = parts.last().unwrap();
                if !reason.contains('…') && reason != kind {
                    assert!(
                        snap.contains(reason),
                        "operations.md ({name}): the planner never says `{reason}`:\n{snap}"
                    );
                }
            }
            checked += 1;
            continue;
        }
        if let Some(lang) = fence {
            block = Some((lang.trim().is_empty(), Vec::new()));
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && snapshots.join(format!("plan__{span}.snap")).exists() {
                test = Some(span.to_string());
            }
        }
    }
    assert!(checked >= 4, "only {checked} plan blocks checked");
}
