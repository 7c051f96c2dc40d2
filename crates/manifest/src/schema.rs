//! The JSON schemas generated from the Rust types, and a small walker that finds the schema for a
//! path in a document (for "did you mean" hints and expected types).

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::lock::LockFile;
use crate::model::Manifest;

/// The manifest's JSON Schema (2020-12), exactly what `benchform schema` prints.
pub fn manifest_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<Manifest>();
        schema.to_value()
    })
}

/// The lock file's JSON Schema.
pub fn lock_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<LockFile>();
        schema.to_value()
    })
}

/// The compiled manifest schema.
pub(crate) fn manifest_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(manifest_schema()))
}

/// The compiled lock schema.
pub(crate) fn lock_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(lock_schema()))
}

fn compile(schema: &Value) -> jsonschema::Validator {
    // Invariant: both schemas are generated from our own types; `schemas_compile` tests them.
    #[allow(clippy::expect_used)]
    jsonschema::validator_for(schema).expect("generated schema compiles")
}

/// Follow `$ref` (local `#/$defs/...` only) until a schema without one.
pub(crate) fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { break };
        let Some(pointer) = reference.strip_prefix('#') else { break };
        match root.pointer(pointer) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

/// The (resolved) schema that applies at `path` in a manifest document.
pub(crate) fn schema_at<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut schema = resolve(root, root);
    for seg in path {
        let next = if let Some(p) = schema.get("properties").and_then(|p| p.get(seg.as_str())) {
            p
        } else if let Some(items) = schema.get("items") {
            items
        } else {
            schema.get("additionalProperties").filter(|v| v.is_object())?
        };
        schema = resolve(root, next);
    }
    Some(schema)
}

/// The property names an object schema allows.
pub(crate) fn property_names(schema: &Value) -> Vec<String> {
    schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// What a schema expects, in words for a message.
pub(crate) fn expected_type(schema: &Value) -> &'static str {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => vec![],
    };
    match types.first().copied() {
        Some("string") => "text",
        Some("integer") => "a whole number",
        Some("number") => "a number",
        Some("boolean") => "true or false",
        Some("array") => "a list",
        Some("object") => "a mapping",
        _ if schema.get("enum").is_some() => "one of the listed values",
        _ => "another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_compile() {
        jsonschema::validator_for(manifest_schema()).unwrap();
        jsonschema::validator_for(lock_schema()).unwrap();
    }

    #[test]
    fn walker_finds_nested_schemas() {
        let root = manifest_schema();
        let path: Vec<String> = ["apps", "0"].iter().map(|s| s.to_string()).collect();
        let app = schema_at(root, &path).unwrap();
        assert!(property_names(app).contains(&"token_env".to_string()));
        let path: Vec<String> = ["policy", "immutable_refs"].iter().map(|s| s.to_string()).collect();
        assert_eq!(expected_type(schema_at(root, &path).unwrap()), "true or false");
        let path: Vec<String> = ["image", "build_args", "X"].iter().map(|s| s.to_string()).collect();
        assert_eq!(expected_type(schema_at(root, &path).unwrap()), "text");
    }
}
