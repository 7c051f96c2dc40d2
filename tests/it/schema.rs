//! The checked-in schemas are what `benchform schema` prints, and every example manifest
//! validates against them.

use serde_json::Value;

use crate::support::{benchform, root};

fn checked_in(name: &str) -> String {
    std::fs::read_to_string(root().join("schema").join(name)).unwrap()
}

#[test]
fn checked_in_schemas_are_fresh() {
    for (kind, file) in [("manifest", "benchform.schema.json"), ("lock", "benchform.lock.schema.json")] {
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
