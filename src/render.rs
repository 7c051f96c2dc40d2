//! Diagnostics for people (rustc-style, with the source line) and for machines (JSON).

use benchform_manifest::diagnostic::{escape_char, escape_controls};
use benchform_manifest::{Diagnostic, Severity};

/// One diagnostic as text:
///
/// ```text
/// error[unknown-field]: unknown field `reff` in `apps[0]`
///   --> benchform.yaml:12:5
///    |
/// 12 |     reff: v15.88.1
///    |     ^^^^
///    = hint: did you mean `ref`?
/// ```
pub fn diagnostic_text(d: &Diagnostic) -> String {
    let mut out = format!("{}[{}]: {}\n", d.severity.as_str(), d.code, escape_controls(&d.message));
    let file = escape_controls(&d.file);
    let location = match (d.line, d.column) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        _ => file,
    };
    let gutter = d.line.map(|l| l.to_string().len()).unwrap_or(1);
    let pad = " ".repeat(gutter);
    out.push_str(&format!("{pad}--> {location}\n"));
    if let (Some(line), Some(snippet)) = (d.line, &d.snippet) {
        // The marker goes where the snippet says, which differs from the file's column when a
        // masked credential shortened the line. Tabs would shift it; they show as spaces on
        // both lines. Control characters show escaped, and the marker moves by their width.
        let plain = snippet.text.replace('\t', " ");
        let column = snippet.column.saturating_sub(1);
        let width =
            |chars: &mut dyn Iterator<Item = char>| -> usize { chars.map(|c| escape_char(c).chars().count()).sum() };
        let lead = width(&mut plain.chars().take(column)) + column.saturating_sub(plain.chars().count());
        let marked = width(&mut plain.chars().skip(column).take(snippet.width.max(1)));
        out.push_str(&format!(
            "{pad} |\n{line} | {}\n{pad} | {}{}\n",
            escape_controls(&plain),
            " ".repeat(lead),
            "^".repeat(marked.max(1))
        ));
    }
    if let Some(hint) = &d.hint {
        out.push_str(&format!("{pad} = hint: {}\n", escape_controls(hint)));
    }
    out
}

/// Every diagnostic as text, then a count.
pub fn diagnostics_text(file: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&diagnostic_text(d));
        out.push('\n');
    }
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    if errors == 0 {
        out.push_str(&format!("{file} is valid ({})\n", count(warnings, "warning")));
    } else {
        out.push_str(&format!("{file}: {}, {}\n", count(errors, "error"), count(warnings, "warning")));
    }
    out
}

fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// `validate --format json`: the wire form; `schema/validate.schema.json` is generated from it.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[schemars(title = "benchform validate")]
pub struct ValidationDocument {
    /// Version of this format; only `1` exists.
    pub format_version: u32,
    /// False when any diagnostic is an error.
    pub valid: bool,
    pub diagnostics: Vec<DiagnosticDocument>,
}

/// One diagnostic as `validate --format json` promises it.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct DiagnosticDocument {
    /// `error` or `warning`.
    pub severity: &'static str,
    /// The stable code (docs/diagnostics.md).
    pub code: &'static str,
    pub message: String,
    /// The file as the user named it.
    pub file: String,
    /// 1-based; null only where no position exists (missing file, undecodable bytes).
    pub line: Option<usize>,
    /// 1-based, in characters of the file's line.
    pub column: Option<usize>,
    pub hint: Option<String>,
}

impl From<&Diagnostic> for DiagnosticDocument {
    fn from(d: &Diagnostic) -> DiagnosticDocument {
        DiagnosticDocument {
            severity: d.severity.as_str(),
            code: d.code.as_str(),
            message: d.message.clone(),
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            hint: d.hint.clone(),
        }
    }
}

/// Print diagnostics on standard error; the command fails.
pub fn fail(shell: &crate::shell::Shell, diagnostics: &[Diagnostic]) -> crate::Status {
    for d in diagnostics {
        shell.err(&diagnostic_text(d));
        shell.err("\n");
    }
    crate::Status::Failure
}

/// Pretty JSON with a trailing newline.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    // Invariant: benchform's report types serialise (plain structs of strings, numbers, lists).
    #[allow(clippy::expect_used)]
    let text = serde_json::to_string_pretty(value).expect("report serialises");
    text + "\n"
}

/// The `validate --format json` document.
pub fn validation_json(diagnostics: &[Diagnostic]) -> String {
    json(&ValidationDocument {
        format_version: 1,
        valid: !diagnostics.iter().any(Diagnostic::is_error),
        diagnostics: diagnostics.iter().map(DiagnosticDocument::from).collect(),
    })
}
