//! Manifest validation: every problem at once, each at its `line:column`.
//!
//! Three passes over one document:
//! 1. YAML reading ([`crate::yaml`]): syntax, duplicate keys, limits;
//! 2. structure, by the JSON schema generated from [`crate::model`] (unknown and missing fields,
//!    wrong types, enums, ranges), each error's instance path mapped back to a YAML position;
//! 3. meaning: names, refs, URLs, image reference, cross-references between sites and apps.
//!
//! Only when no error remains is the typed [`Manifest`] produced.

use std::path::Path;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Severity, Snippet};
use crate::model::Manifest;
use crate::names;
use crate::schema::{manifest_schema, schema_at};
use crate::yaml::{self, Node, YamlProblemKind};

/// A JSON-pointer-like path into the document: object keys and array indexes.
pub type FieldPath = Vec<String>;

macro_rules! field_path {
    ($($seg:expr),* $(,)?) => { vec![$($seg.to_string()),*] };
}
pub(crate) use field_path as path;

/// What part of a mapping entry a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Key,
    Value,
}

/// The result of reading and checking one manifest.
#[derive(Debug)]
pub struct Validation {
    /// Present only when there is no error.
    pub manifest: Option<Manifest>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
    doc: Document,
}

/// A source document with its position tree, able to place diagnostics.
#[derive(Debug, Clone)]
pub struct Document {
    file: String,
    source: String,
    root: Option<Node>,
    /// Strings never to show (credentials, pasted tokens); masked in every snippet.
    secrets: Vec<String>,
}

impl Validation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Warn about files and folders the manifest names that do not exist. `base` is the
    /// manifest's folder; `exists` answers for a joined path (the caller owns the I/O).
    pub fn check_paths(&mut self, base: &Path, exists: impl Fn(&Path) -> bool) {
        let Some(m) = &self.manifest else { return };
        let context = base.join(&m.image.context);
        let compose_dir = base.join(m.deploy.compose.dir.as_deref().unwrap_or(&m.image.context));
        let mut wanted: Vec<(FieldPath, std::path::PathBuf)> = vec![
            (path!["image", "context"], context.clone()),
            (path!["image", "containerfile"], context.join(&m.image.containerfile)),
        ];
        if m.deploy.compose.dir.is_some() {
            wanted.push((path!["deploy", "compose", "dir"], compose_dir.clone()));
        }
        for (i, f) in m.deploy.compose.files.iter().enumerate() {
            wanted.push((path!["deploy", "compose", "files", i], compose_dir.join(f)));
        }
        if let Some(env) = &m.deploy.compose.env_file {
            wanted.push((path!["deploy", "compose", "env_file"], compose_dir.join(env)));
        }
        for (field, full) in wanted {
            let full = normalize(&full);
            if !exists(&full) {
                let d = self.doc.diagnostic(
                    Severity::Warning,
                    Code::MissingPath,
                    &field,
                    Target::Value,
                    format!("`{}` names {}, which does not exist here", display_path(&field), full.display()),
                    Some(
                        "fine where the frappe_docker checkout is absent (pull-request CI); \
                         build, plan and apply need it"
                            .to_string(),
                    ),
                );
                self.diagnostics.push(d);
            }
        }
        sort(&mut self.diagnostics);
    }

    /// Check that the compose files can run the manifest's image: some file must take it from
    /// `${CUSTOM_IMAGE}` (as frappe_docker's compose.yaml does) or name `image.repository`. A
    /// file rendered with `docker compose config`, or `pwd.yml`, names fixed images: a deploy
    /// would change nothing. `read` returns a file's text (`None`: unreadable, not judged).
    pub fn check_compose_image(&mut self, base: &Path, read: impl Fn(&Path) -> Option<String>) {
        let Some(m) = &self.manifest else { return };
        let compose_dir = base.join(m.deploy.compose.dir.as_deref().unwrap_or(&m.image.context));
        let texts: Option<Vec<String>> =
            m.deploy.compose.files.iter().map(|f| read(&normalize(&compose_dir.join(f)))).collect();
        let Some(texts) = texts else { return };
        if texts.is_empty() || texts.iter().any(|t| t.contains("CUSTOM_IMAGE") || t.contains(&m.image.repository)) {
            return;
        }
        let field = path!["deploy", "compose", "files"];
        let d = self.doc.diagnostic(
            Severity::Error,
            Code::ComposeWithoutImage,
            &field,
            Target::Value,
            format!(
                "no compose file runs `image.repository` ({}): none takes its image from ${{CUSTOM_IMAGE}} or names \
                 it, so a deploy would change nothing",
                m.image.repository
            ),
            Some(
                "list frappe_docker's compose.yaml and overrides (their services run ${CUSTOM_IMAGE}:${CUSTOM_TAG}), \
                 not a file rendered with `docker compose config` or pwd.yml"
                    .to_string(),
            ),
        );
        self.diagnostics.push(d);
        sort(&mut self.diagnostics);
    }

    /// The manifest file as the user named it.
    pub fn file(&self) -> &str {
        &self.doc.file
    }

    /// Place a diagnostic from a later stage (locking, say) on the manifest's source: `path`
    /// as in [`source_path`], pointing at the value.
    pub fn locate(
        &self,
        severity: Severity,
        code: Code,
        path: &[String],
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        self.doc.diagnostic(severity, code, path, Target::Value, message, hint)
    }
}

/// Where the source named `name` (frappe or an app) sits in the manifest, plus `field`
/// (e.g. `ref`): `["frappe", "ref"]` or `["apps", "2", "ref"]`.
pub fn source_path(manifest: &Manifest, name: &str, field: &str) -> FieldPath {
    match manifest.apps.iter().position(|a| a.name == name) {
        Some(i) => path!["apps", i, field],
        None => path!["frappe", field],
    }
}

/// Remove `.` and `name/..` pairs without touching the file system, for readable messages.
fn normalize(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() { std::path::PathBuf::from(".") } else { out.iter().collect() }
}

/// Read and check a manifest. `file` is how the user named it (it appears in diagnostics).
pub fn validate(file: &str, bytes: &[u8]) -> Validation {
    let (mut doc, value, mut diagnostics) = read(file, bytes);
    let Some(value) = value else {
        return Validation { manifest: None, diagnostics, doc };
    };
    let mut semantic = crate::rules::check(&value, &mut doc);
    diagnostics.extend(structural(&value, &doc, manifest_schema(), crate::schema::manifest_validator()));
    diagnostics.append(&mut semantic);
    sort(&mut diagnostics);
    let manifest = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        match deserialize(value, &doc) {
            Ok(m) => Some(m),
            Err(d) => {
                diagnostics.push(*d);
                None
            }
        }
    };
    Validation { manifest, diagnostics, doc }
}

/// Read a YAML file that must match `schema` (the lock, for one) into `T`.
pub(crate) fn read_typed<T: serde::de::DeserializeOwned>(
    file: &str,
    bytes: &[u8],
    schema: &'static Value,
    validator: &jsonschema::Validator,
    rules: fn(&Value, &mut Document) -> Vec<Diagnostic>,
) -> Result<T, Vec<Diagnostic>> {
    let (mut doc, value, mut diagnostics) = read(file, bytes);
    let Some(value) = value else { return Err(diagnostics) };
    diagnostics.extend(structural(&value, &doc, schema, validator));
    diagnostics.extend(rules(&value, &mut doc));
    if diagnostics.iter().any(Diagnostic::is_error) {
        sort(&mut diagnostics);
        return Err(diagnostics);
    }
    deserialize(value, &doc).map_err(|d| vec![*d])
}

fn deserialize<T: serde::de::DeserializeOwned>(value: Value, doc: &Document) -> Result<T, Box<Diagnostic>> {
    serde_json::from_value::<T>(value).map_err(|e| {
        Box::new(doc.diagnostic(
            Severity::Error,
            Code::Schema,
            &[],
            Target::Value,
            format!("the file passed its checks but could not be read: {e}"),
            Some("this is a benchform bug; please report it with the file".to_string()),
        ))
    })
}

/// The lines of `source` as YAML counts them: a line ends at `\r\n`, `\n` or a lone `\r`.
pub fn yaml_lines(source: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(source);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\n', '\r']) {
            Some(i) => {
                let after = if text[i..].starts_with("\r\n") { i + 2 } else { i + 1 };
                rest = (after < text.len()).then(|| &text[after..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                (!text.is_empty()).then_some(text)
            }
        }
    })
}

/// Decode, parse YAML, and require a mapping at the top. The value is `None` when reading
/// could not get that far; the diagnostics say why.
fn read(file: &str, bytes: &[u8]) -> (Document, Option<Value>, Vec<Diagnostic>) {
    let mut doc = Document { file: file.to_string(), source: String::new(), root: None, secrets: vec![] };
    let source = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let d = doc.unplaced(
                Code::NotUtf8,
                format!("the file is not UTF-8 text (invalid byte at offset {})", e.valid_up_to()),
                Some("save the file as UTF-8".to_string()),
            );
            return (doc, None, vec![d]);
        }
    };
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    doc.source = source.to_string();

    let parsed = yaml::parse(source);
    let mut diagnostics: Vec<Diagnostic> = parsed.problems.iter().map(|p| doc.yaml_problem(p)).collect();
    sort(&mut diagnostics);
    let Some(root) = parsed.root else {
        return (doc, None, diagnostics);
    };
    let value = root.to_json();
    doc.root = Some(root);
    if !value.is_object() {
        diagnostics.push(doc.diagnostic(
            Severity::Error,
            Code::WrongType,
            &[],
            Target::Value,
            format!("the file must be a mapping of keys, not {}", describe_value(&value)),
            Some("start from an example in manifests/, or run `benchform schema`".to_string()),
        ));
        return (doc, None, diagnostics);
    }
    (doc, Some(value), diagnostics)
}

fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
}

/// Pass 2: the JSON schema, errors mapped back to positions.
fn structural(value: &Value, doc: &Document, schema: &Value, validator: &jsonschema::Validator) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // (container, name) of unknown keys that look like a typo of a known one: `reff` for `ref`.
    let mut typos: Vec<(FieldPath, String)> = Vec::new();
    let mut missing: Vec<(FieldPath, String, Diagnostic)> = Vec::new();
    for err in validator.iter_errors(value) {
        let at: FieldPath = err.instance_path().iter().map(|s| s.to_string()).collect();
        let here = schema_at(schema, &at);
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let mut field = at.clone();
                    field.push(name.clone());
                    let allowed = here.map(crate::schema::property_names).unwrap_or_default();
                    if let Some(best) = names::did_you_mean(name, allowed.iter().map(String::as_str)) {
                        typos.push((at.clone(), best.to_string()));
                    }
                    out.push(doc.diagnostic(
                        Severity::Error,
                        Code::UnknownField,
                        &field,
                        Target::Key,
                        format!("unknown field `{name}` in {}", display_container(&at)),
                        unknown_field_hint(&at, name, &allowed),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let description = here
                    .and_then(|s| s.get("properties"))
                    .and_then(|p| p.get(name))
                    .map(|p| crate::schema::resolve(schema, p))
                    .and_then(|p| p.get("description"))
                    .and_then(Value::as_str)
                    .map(|d| d.split("\n").next().unwrap_or_default().to_string());
                let hint = match description {
                    Some(d) => format!("add `{name}:` ({})", d.trim_end_matches('.').to_lowercase()),
                    None => format!("add `{name}:`"),
                };
                let d = doc.diagnostic(
                    Severity::Error,
                    Code::MissingField,
                    &at,
                    Target::Value,
                    format!("missing field `{name}` in {}", display_container(&at)),
                    Some(hint),
                );
                missing.push((at.clone(), name.to_string(), d));
            }
            ValidationErrorKind::Type { .. } => {
                out.push(wrong_type(doc, &at, here, err.instance()));
            }
            ValidationErrorKind::Constant { expected_value } if at == ["version"] => {
                out.push(doc.diagnostic(
                    Severity::Error,
                    Code::UnsupportedVersion,
                    &at,
                    Target::Value,
                    format!(
                        "unsupported manifest version {}; this benchform reads version {expected_value}",
                        err.instance()
                    ),
                    Some(format!("write `version: {expected_value}`, or upgrade benchform")),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let allowed: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                let got = err.instance().as_str().unwrap_or_default().to_string();
                let hint = match names::did_you_mean(&got, allowed.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`? (one of: {})", allowed.join(", ")),
                    None => format!("one of: {}", allowed.join(", ")),
                };
                out.push(doc.diagnostic(
                    Severity::Error,
                    Code::InvalidValue,
                    &at,
                    Target::Value,
                    format!("`{}` cannot be {}", display_path(&at), err.instance()),
                    Some(hint),
                ));
            }
            ValidationErrorKind::Minimum { limit } => {
                out.push(doc.diagnostic(
                    Severity::Error,
                    Code::InvalidValue,
                    &at,
                    Target::Value,
                    format!("`{}` must be at least {limit}, not {}", display_path(&at), err.instance()),
                    None,
                ));
            }
            // Names with a pattern in the schema (for editors) get a sharper message, with a
            // suggested fix, from the rules pass; reporting them here too would say it twice.
            ValidationErrorKind::Pattern { .. } => {}
            _ => out.push(doc.diagnostic(
                Severity::Error,
                Code::Schema,
                &at,
                Target::Value,
                format!("`{}`: {err}", display_path(&at)),
                None,
            )),
        }
    }
    // A misspelt key is also a missing one; the unknown-field error already says both.
    out.extend(
        missing
            .into_iter()
            .filter(|(at, name, _)| !typos.iter().any(|(t_at, t_name)| t_at == at && t_name == name))
            .map(|(_, _, d)| d),
    );
    out
}

fn unknown_field_hint(at: &[String], name: &str, allowed: &[String]) -> Option<String> {
    if at == ["frappe"] && name == "token_env" {
        return Some(
            "frappe is cloned from FRAPPE_PATH, a build argument kept in image history, so it \
             cannot use a token; use a public (or mirrored) framework repository"
                .to_string(),
        );
    }
    if let Some(best) = names::did_you_mean(name, allowed.iter().map(String::as_str)) {
        return Some(format!("did you mean `{best}`?"));
    }
    if allowed.is_empty() { None } else { Some(format!("allowed here: {}", allowed.join(", "))) }
}

fn wrong_type(doc: &Document, at: &[String], schema: Option<&Value>, found: &Value) -> Diagnostic {
    let expected = schema.map(crate::schema::expected_type).unwrap_or("another type");
    let node = doc.node(at);
    let source_text = node.and_then(Node::as_scalar).unwrap_or_default().to_string();
    let unquoted = node.is_some_and(Node::is_unquoted_non_string);
    let field = display_path(at);
    let last = at.last().map(String::as_str).unwrap_or_default();
    let (message, hint) = if expected == "text" && unquoted {
        // Compare texts: `15.10` reads as 15.1, while `3.11` reads as 3.11 and needs other words.
        let as_read = found.to_string();
        let message = if found.is_number() && as_read != source_text {
            format!(
                "`{field}` is the number {found} here, not the text `{source_text}`: YAML reads unquoted `{source_text}` as a number"
            )
        } else {
            format!("`{field}` must be text, but YAML reads unquoted `{source_text}` as {}", describe_value(found))
        };
        (message, Some(format!("quote it: `{last}: \"{source_text}\"`")))
    } else if expected == "true or false" && found.is_string() {
        (
            format!("`{field}` must be true or false, not {}", describe_value(found)),
            Some("write `true` or `false` (YAML 1.2 reads yes/no/on/off as text)".to_string()),
        )
    } else if expected == "a list" && !found.is_array() && !found.is_null() {
        (
            format!("`{field}` must be a list, not {}", describe_value(found)),
            Some(format!("write a list: `{last}: [{}]`", if source_text.is_empty() { "…" } else { &source_text })),
        )
    } else {
        (format!("`{field}` must be {expected}, not {}", describe_value(found)), None)
    };
    doc.diagnostic(Severity::Error, Code::WrongType, at, Target::Value, message, hint)
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "empty".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "text".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

/// `apps[1].ref` for `["apps", "1", "ref"]`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    if out.is_empty() { "the manifest".to_string() } else { out }
}

fn display_container(path: &[String]) -> String {
    if path.is_empty() { "the manifest".to_string() } else { format!("`{}`", display_path(path)) }
}

impl Document {
    /// The file as the user named it.
    pub fn file(&self) -> &str {
        &self.file
    }

    pub(crate) fn add_secret(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.secrets.push(secret.to_string());
        }
    }

    pub(crate) fn node(&self, path: &[String]) -> Option<&Node> {
        self.root.as_ref()?.lookup(path)
    }

    /// Place a diagnostic at `path`: on the key or the value of that entry, or on the nearest
    /// enclosing node that exists (a missing field points at the mapping that lacks it).
    pub(crate) fn diagnostic(
        &self,
        severity: Severity,
        code: Code,
        path: &[String],
        target: Target,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let mut span = None;
        if let Some(root) = &self.root {
            if target == Target::Key
                && let Some((last, parent)) = path.split_last()
            {
                span = root.lookup(parent).and_then(|p| p.entry(last)).map(|e| e.key.span);
            }
            let mut prefix = path;
            while span.is_none() {
                span = root.lookup(prefix).map(|n| n.span);
                match prefix.split_last() {
                    Some((_, rest)) => prefix = rest,
                    None => break,
                }
            }
        }
        let (line, column, width) = match span {
            Some(s) => (Some(s.start.line), Some(s.start.column), s.width_on_first_line()),
            None => (None, None, 1),
        };
        self.make(severity, code, line, column, width, message, hint)
    }

    fn unplaced(&self, code: Code, message: String, hint: Option<String>) -> Diagnostic {
        self.make(Severity::Error, code, None, None, 1, message, hint)
    }

    #[allow(clippy::too_many_arguments)]
    fn make(
        &self,
        severity: Severity,
        code: Code,
        line: Option<usize>,
        column: Option<usize>,
        width: usize,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        // Every position lies in the file, even an end-of-input one.
        let (line, column) = match (line, column) {
            (Some(l), Some(c)) => {
                let (l, c) = self.clamp(l, c);
                (Some(l), Some(c))
            }
            other => other,
        };
        let original = line.and_then(|l| yaml_lines(&self.source).nth(l.saturating_sub(1)));
        let snippet = match (original, column) {
            (Some(text), Some(c)) => Some(Snippet::masked(text, c, width, |t| self.redact(t))),
            _ => None,
        };
        // Messages and hints quote values from the file: they are masked like the snippet.
        let message = self.redact(&message);
        let hint = hint.map(|h| self.redact(&h));
        Diagnostic { severity, code, message, file: self.file.clone(), line, column, hint, snippet }
    }

    /// The parser places end-of-input problems on the line after the last; a file without a
    /// trailing newline has no such line, so they belong just after its last character.
    fn clamp(&self, line: usize, column: usize) -> (usize, usize) {
        let lines = yaml_lines(&self.source).count();
        let past_end = if self.source.ends_with(['\n', '\r']) { line > lines + 1 } else { line > lines };
        match yaml_lines(&self.source).last() {
            Some(last) if past_end => (lines, last.chars().count() + 1),
            _ => (line, column),
        }
    }

    fn yaml_problem(&self, p: &yaml::YamlProblem) -> Diagnostic {
        let (code, hint) = match p.kind {
            YamlProblemKind::Syntax => {
                (Code::YamlSyntax, Some("check indentation, colons and quotes on this line or the one before"))
            }
            YamlProblemKind::DuplicateKey => (Code::DuplicateKey, Some("remove one of them")),
            YamlProblemKind::Limit => {
                (Code::YamlLimit, Some("a manifest needs no aliases or deep nesting; write it out plainly"))
            }
            YamlProblemKind::Empty => (Code::EmptyManifest, Some("start from an example in manifests/")),
            YamlProblemKind::MultipleDocuments => (Code::MultipleDocuments, Some("keep one manifest per file")),
            YamlProblemKind::ComplexKey => (Code::ComplexKey, Some("use a plain name as the key")),
        };
        let (line, column) = match p.pos {
            Some(pos) => (Some(pos.line), Some(pos.column)),
            None => (None, None),
        };
        self.make(Severity::Error, code, line, column, p.width, p.message.clone(), hint.map(str::to_string))
    }

    /// Mask credentials in URLs (`scheme://user:secret@host`) and every registered secret.
    fn redact(&self, text: &str) -> String {
        // The one masker of benchform (longest secret first, the same threshold everywhere).
        crate::mask::Masker::new(self.secrets.iter().cloned())
            .mask(&names::redact_tokens(&names::redact_url_credentials(text)))
    }
}
