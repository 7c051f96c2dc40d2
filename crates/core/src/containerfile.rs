//! What a Containerfile reads, found without building it: the images its stages start `FROM`,
//! and the files of the build context its `COPY`, `ADD` and `RUN --mount=type=bind` take.
//!
//! The image tag hashes exactly these files (see [`crate::tag`]), so an edit anywhere else in a
//! frappe_docker checkout — its docs, an override, `.github/` — leaves the tag, and the image,
//! as they are.
//!
//! The reading follows the Dockerfile frontend: parser directives (`# escape=`), comment lines,
//! line continuations, global `ARG`s (the only variables `FROM` sees) and per-stage `ARG`/`ENV`,
//! `${VAR}`, `$VAR`, `${VAR:-word}` and `${VAR:+word}`, build arguments overriding `ARG`
//! defaults, stage names, `--from=`, JSON and whitespace forms. Where it cannot tell what a build
//! reads (a source that leaves the context, say), it takes the whole context: a needless rebuild
//! is safe, a missed input is not. No maintained crate expands build arguments in `FROM` and
//! `COPY` or reads `RUN --mount` sources (docs/decisions.md), so this is its own small reader.

use std::collections::BTreeMap;

/// What a Containerfile reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReads {
    /// The images stages start from (or `COPY --from` names), in order, stage names and `scratch`
    /// left out, with variables expanded.
    pub bases: Vec<BaseImage>,
    /// The context files the build takes.
    pub context: ContextReads,
    /// `ADD` sources from the network (URLs, git), which the tag can only name.
    pub remote: Vec<String>,
    /// The global `ARG`s (declared before the first `FROM`) with the values `FROM` sees.
    pub globals: BTreeMap<String, String>,
}

/// An image a build starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The reference, expanded: `frappe/build:version-15`.
    pub reference: String,
    /// As written: `${FRAPPE_IMAGE_PREFIX}/build:${FRAPPE_BRANCH}`.
    pub written: String,
    /// 1-based line of its instruction.
    pub line: usize,
}

/// The context files a build takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextReads {
    /// Everything `.dockerignore` lets through.
    Whole,
    /// Files and folders (recursively) matching these patterns, relative to the context root,
    /// `/`-separated, with `*`, `?` and `[…]` per segment (sorted, deduplicated).
    Paths(Vec<String>),
}

impl ContextReads {
    /// Does the build take this context file (`a/b/c`, relative)? A pattern names a file or a
    /// folder taken with everything under it.
    pub fn takes(&self, rel: &str) -> bool {
        self.agrees(rel, |pattern, path| pattern <= path)
    }

    /// Could the build read something through `rel` — a path it takes, or a folder on the way
    /// to one? (A symlink there points elsewhere, and BuildKit follows it.)
    pub fn reaches(&self, rel: &str) -> bool {
        self.agrees(rel, |_, _| true)
    }

    /// Some pattern matches `rel` segment by segment over the length they share, and `lengths`
    /// holds for (the pattern's segments, `rel`'s segments).
    fn agrees(&self, rel: &str, lengths: impl Fn(usize, usize) -> bool) -> bool {
        match self {
            ContextReads::Whole => true,
            ContextReads::Paths(patterns) => {
                let parts: Vec<&str> = rel.split('/').collect();
                patterns.iter().any(|p| {
                    let pattern: Vec<&str> = p.split('/').collect();
                    lengths(pattern.len(), parts.len())
                        && pattern.iter().zip(&parts).all(|(p, s)| glob_segment(p.as_bytes(), s.as_bytes()))
                })
            }
        }
    }
}

/// A Containerfile benchform cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ContainerfileError {
    pub line: usize,
    pub message: String,
}

/// One instruction: its keyword (uppercase), the rest of its logical line, its first line.
struct Instruction {
    keyword: String,
    rest: String,
    line: usize,
}

/// Read a Containerfile's text with the build arguments the build gets.
pub fn reads(text: &str, build_args: &BTreeMap<String, String>) -> Result<BuildReads, ContainerfileError> {
    let instructions = instructions(text);
    let mut globals: BTreeMap<String, String> = BTreeMap::new();
    let mut stage_vars: Option<BTreeMap<String, String>> = None;
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut whole = false;
    let mut remote = Vec::new();
    for ins in &instructions {
        match ins.keyword.as_str() {
            "ARG" => {
                for word in split_words(&ins.rest) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (word.clone(), None),
                    };
                    match stage_vars.as_mut() {
                        None => {
                            let value = build_args
                                .get(&name)
                                .cloned()
                                .or_else(|| default.map(|d| expand(&unquote(&d), &globals)))
                                .unwrap_or_default();
                            globals.insert(name, value);
                        }
                        Some(vars) => {
                            let value = build_args
                                .get(&name)
                                .cloned()
                                .or_else(|| default.map(|d| expand(&unquote(&d), vars)))
                                .or_else(|| globals.get(&name).cloned())
                                .unwrap_or_default();
                            vars.insert(name, value);
                        }
                    }
                }
            }
            "ENV" => {
                if let Some(vars) = stage_vars.as_mut() {
                    let words = split_words(&ins.rest);
                    if words.len() >= 2 && !words[0].contains('=') {
                        // `ENV NAME value…` (the old form).
                        let value = ins.rest.trim_start()[words[0].len()..].trim().to_string();
                        let value = expand(&unquote(&value), vars);
                        vars.insert(words[0].clone(), value);
                    } else {
                        for word in words {
                            if let Some((n, v)) = word.split_once('=') {
                                let v = expand(&unquote(v), vars);
                                vars.insert(n.to_string(), v);
                            }
                        }
                    }
                }
            }
            "FROM" => {
                let words: Vec<String> = split_words(&ins.rest).into_iter().filter(|w| !w.starts_with("--")).collect();
                let Some(written) = words.first() else {
                    return Err(ContainerfileError { line: ins.line, message: "FROM names no image".to_string() });
                };
                let reference = expand(written, &globals);
                add_base(&mut bases, &stages, written, reference, ins.line);
                if let (Some(kw), Some(name)) = (words.get(1), words.get(2))
                    && kw.eq_ignore_ascii_case("as")
                {
                    stages.push(name.to_ascii_lowercase());
                }
                stage_vars = Some(BTreeMap::new());
            }
            "COPY" | "ADD" => {
                let Some(vars) = stage_vars.as_ref() else {
                    return Err(ContainerfileError {
                        line: ins.line,
                        message: format!("{} before the first FROM", ins.keyword),
                    });
                };
                let words = arguments(&ins.rest).map_err(|message| ContainerfileError { line: ins.line, message })?;
                let (flags, args): (Vec<_>, Vec<_>) = {
                    let n = words.iter().take_while(|w| w.starts_with("--")).count();
                    (words[..n].to_vec(), words[n..].to_vec())
                };
                if let Some(written) = flags.iter().find_map(|f| f.strip_prefix("--from=")) {
                    let from = expand(written, vars);
                    if from.parse::<usize>().is_err() {
                        add_base(&mut bases, &stages, written, from, ins.line);
                    }
                    continue;
                }
                if args.len() < 2 {
                    continue;
                }
                for source in &args[..args.len() - 1] {
                    if source.starts_with("<<") {
                        continue; // a here-document: inline text, already in the Containerfile's bytes
                    }
                    let Some(source) = expand_known(source, vars) else {
                        whole = true;
                        continue;
                    };
                    if ins.keyword == "ADD" && (source.contains("://") || source.starts_with("git@")) {
                        remote.push(source);
                        continue;
                    }
                    match clean(&source) {
                        Some(p) if !p.is_empty() => paths.push(p),
                        _ => whole = true,
                    }
                }
            }
            "RUN" => {
                let vars = stage_vars.clone().unwrap_or_default();
                for word in split_words(&ins.rest).iter().take_while(|w| w.starts_with("--")) {
                    let Some(mount) = word.strip_prefix("--mount=") else { continue };
                    let fields: BTreeMap<&str, &str> =
                        mount.split(',').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
                    let kind = fields.get("type").copied().unwrap_or("bind");
                    if let Some(from) = fields.get("from") {
                        // A mount from an image (not a stage) is an image the build reads.
                        let image = expand(from, &vars);
                        if image.parse::<usize>().is_err() {
                            add_base(&mut bases, &stages, from, image, ins.line);
                        }
                        continue;
                    }
                    if kind != "bind" {
                        continue;
                    }
                    let source = fields.get("source").or_else(|| fields.get("src")).copied().unwrap_or(".");
                    match expand_known(source, &vars).as_deref().and_then(clean) {
                        Some(p) if !p.is_empty() => paths.push(p),
                        _ => whole = true,
                    }
                }
            }
            _ => {}
        }
    }
    if stage_vars.is_none() {
        return Err(ContainerfileError { line: 1, message: "no FROM instruction".to_string() });
    }
    paths.sort();
    paths.dedup();
    Ok(BuildReads {
        bases,
        context: if whole { ContextReads::Whole } else { ContextReads::Paths(paths) },
        remote,
        globals,
    })
}

/// The build argument frappe_docker's Containerfiles name their base images' prefix with.
pub const PREFIX_ARG: &str = "FRAPPE_IMAGE_PREFIX";
/// The build argument that is both bench's frappe branch and the base images' tag.
pub const BRANCH_ARG: &str = "FRAPPE_BRANCH";
/// Where benchform puts the local aliases of `image.base_tag`: a name no registry serves, so an
/// alias never shadows a real image.
pub const ALIAS_NAMESPACE: &str = "benchform-base";

/// An image a build starts from: the name the Containerfile pulls, and the image that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// What the build's `FROM` resolves to (`benchform-base/frappe/build:v15.88.1`).
    pub pulled: String,
    /// The image it is (`frappe/build:version-15`): the same name unless `image.base_tag` aliases it.
    pub source: String,
    pub written: String,
    pub line: usize,
}

/// A Containerfile read for a build: what it reads, the images it starts from, and the build
/// arguments to pass (with `FRAPPE_IMAGE_PREFIX` pointing at the aliases when `base_tag` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub reads: BuildReads,
    pub bases: Vec<Base>,
    pub build_args: BTreeMap<String, String>,
}

/// Read a Containerfile for a build with `build_args`, honouring `image.base_tag`: the bases
/// named `${FRAPPE_IMAGE_PREFIX}/…:${FRAPPE_BRANCH}` come from tag `base_tag` instead, through
/// local aliases under [`ALIAS_NAMESPACE`] that the build's `FRAPPE_IMAGE_PREFIX` points at —
/// `FRAPPE_BRANCH` itself stays `frappe.ref`, so bench clones frappe at the pinned tag.
pub fn resolve(
    text: &str,
    build_args: &BTreeMap<String, String>,
    base_tag: Option<&str>,
) -> Result<Resolved, ContainerfileError> {
    let plain = reads(text, build_args)?;
    let Some(base_tag) = base_tag else {
        let bases = plain
            .bases
            .iter()
            .map(|b| Base {
                pulled: b.reference.clone(),
                source: b.reference.clone(),
                written: b.written.clone(),
                line: b.line,
            })
            .collect();
        return Ok(Resolved { reads: plain, bases, build_args: build_args.clone() });
    };
    let tagged = |b: &BaseImage| b.written.contains(PREFIX_ARG) && b.written.contains(BRANCH_ARG);
    if !plain.bases.iter().any(&tagged) {
        return Err(ContainerfileError {
            line: plain.bases.first().map_or(1, |b| b.line),
            message: format!(
                "image.base_tag is set, but no FROM names its image as `${{{PREFIX_ARG}}}/…:${{{BRANCH_ARG}}}` the way \
                 frappe_docker's Containerfiles do, so there is nothing to take from tag {base_tag}"
            ),
        });
    }
    let prefix = plain.globals.get(PREFIX_ARG).cloned().unwrap_or_default();
    let alias_prefix = format!("{ALIAS_NAMESPACE}/{}", prefix.to_ascii_lowercase().replace(':', "-"));
    let mut args = build_args.clone();
    args.insert(PREFIX_ARG.to_string(), alias_prefix);
    let mut real_args = build_args.clone();
    real_args.insert(BRANCH_ARG.to_string(), base_tag.to_string());
    let aliased = reads(text, &args)?;
    let real = reads(text, &real_args)?;
    let bases = aliased
        .bases
        .iter()
        .map(|a| {
            // Every base named through the prefix moves under the aliases: from the branch's tag
            // when it names the branch too, else as it was.
            let twin = |list: &[BaseImage]| {
                list.iter().find(|r| r.line == a.line && r.written == a.written).map(|r| r.reference.clone())
            };
            let source = if tagged(a) {
                twin(&real.bases)
            } else if a.written.contains(PREFIX_ARG) {
                twin(&plain.bases)
            } else {
                None
            };
            Base {
                pulled: a.reference.clone(),
                source: source.unwrap_or_else(|| a.reference.clone()),
                written: a.written.clone(),
                line: a.line,
            }
        })
        .collect();
    Ok(Resolved { reads: aliased, bases, build_args: args })
}

/// Note an image a stage starts from, unless it is `scratch`, an earlier stage or already noted.
fn add_base(bases: &mut Vec<BaseImage>, stages: &[String], written: &str, reference: String, line: usize) {
    let lower = reference.to_ascii_lowercase();
    if lower != "scratch" && !stages.contains(&lower) && !bases.iter().any(|b| b.reference == reference) {
        bases.push(BaseImage { reference, written: written.to_string(), line });
    }
}

/// The logical instructions: directives honoured, comments dropped, continuations joined.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut escape = '\\';
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().peekable();
    // Parser directives: `# key=value` lines at the very top.
    while let Some((_, line)) = lines.peek() {
        let Some(body) = line.trim().strip_prefix('#') else { break };
        let Some((key, value)) = body.split_once('=') else { break };
        let key = key.trim().to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            break;
        }
        if key == "escape" && value.trim() == "`" {
            escape = '`';
        }
        lines.next();
    }
    let mut out: Vec<Instruction> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    // Here-documents still to skip (their bodies are data, not instructions): (word, `<<-`).
    let mut heredocs: std::collections::VecDeque<(String, bool)> = std::collections::VecDeque::new();
    for (i, raw) in lines {
        if let Some((word, dash)) = heredocs.front() {
            let line = if *dash { raw.trim_start_matches('\t') } else { raw };
            if line == word {
                heredocs.pop_front();
            }
            continue;
        }
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_some()) {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        let (start, mut text) = current.take().unwrap_or((i + 1, String::new()));
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(body);
        if continues {
            current = Some((start, text));
        } else if !text.trim().is_empty() {
            heredocs.extend(heredoc_words(&text));
            out.push(split_instruction(start, &text));
        }
    }
    if let Some((start, text)) = current
        && !text.trim().is_empty()
    {
        out.push(split_instruction(start, &text));
    }
    out
}

/// The here-documents an instruction opens (`<<EOF`, `<<-"EOF"`), in order: their terminators,
/// and whether leading tabs are stripped before comparing.
fn heredoc_words(text: &str) -> Vec<(String, bool)> {
    split_words(text)
        .iter()
        .filter_map(|w| {
            let at = w.find("<<")?;
            let rest = &w[at + 2..];
            let (dash, rest) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let word = rest.trim_matches(['"', '\'']);
            let ok = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ok.then(|| (word.to_string(), dash))
        })
        .collect()
}

fn split_instruction(line: usize, text: &str) -> Instruction {
    let text = text.trim();
    let (keyword, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    Instruction { keyword: keyword.to_ascii_uppercase(), rest: rest.trim().to_string(), line }
}

/// Whitespace-separated words, quotes kept together (`a="b c"` is one word).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `COPY`/`ADD` arguments: leading flags, then the JSON form (`["a", "b"]`) or words.
fn arguments(rest: &str) -> Result<Vec<String>, String> {
    let words = split_words(rest);
    let n = words.iter().take_while(|w| w.starts_with("--")).count();
    // The text after the flags, as written (the JSON form may hold spaces).
    let mut after = rest.trim_start();
    for w in &words[..n] {
        after = after.get(w.len()..).unwrap_or_default().trim_start();
    }
    let mut out: Vec<String> = words[..n].to_vec();
    // The JSON form when it parses as a list of strings; else, as the frontend does, words
    // (`COPY [ab]*.txt /x/`).
    if let Some(list) = after.starts_with('[').then(|| serde_json::from_str::<Vec<String>>(after).ok()).flatten() {
        out.extend(list);
    } else {
        out.extend(split_words(after).into_iter().map(|w| unquote(&w)));
    }
    Ok(out)
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// [`expand`], or `None` when `text` names a variable that is not defined here (the base image's
/// `ENV`, `TARGETARCH`, an earlier stage's `ENV`…) or uses an operator this reader does not know:
/// the build may read another path than this reader would say.
fn expand_known(text: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('\\', Some('$')) => i += 2,
            ('$', Some('{')) => {
                let end = chars[i + 2..].iter().position(|c| *c == '}')?;
                let inner: String = chars[i + 2..i + 2 + end].iter().collect();
                let name_len = inner.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
                let (name, op) = inner.split_at(name_len);
                let defaulted = op.starts_with(":-") || op.starts_with(":+");
                if !(op.is_empty() || defaulted) || (op.is_empty() && !vars.contains_key(name)) {
                    return None;
                }
                i += end + 3;
            }
            ('$', Some(c)) if c.is_ascii_alphabetic() || *c == '_' => {
                let len = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                if !vars.contains_key(&name) {
                    return None;
                }
                i += len + 1;
            }
            _ => i += 1,
        }
    }
    Some(expand(text, vars))
}

/// Expand `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}` (`\$` is a literal `$`); unknown
/// variables are empty, as in the Dockerfile frontend.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let Some(end) = chars[i + 2..].iter().position(|c| *c == '}') else {
                    out.extend(&chars[i..]);
                    break;
                };
                let inner: String = chars[i + 2..i + 2 + end].iter().collect();
                let value = |name: &str| vars.get(name).cloned().unwrap_or_default();
                let expanded = if let Some((name, word)) = inner.split_once(":-") {
                    let v = value(name);
                    if v.is_empty() { expand(word, vars) } else { v }
                } else if let Some((name, word)) = inner.split_once(":+") {
                    if value(name).is_empty() { String::new() } else { expand(word, vars) }
                } else {
                    value(&inner)
                };
                out.push_str(&expanded);
                i += end + 3;
            }
            '$' if chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') => {
                let len = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or_default());
                i += len + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A source path relative to the context root: `./a//b/` → `a/b`; `.` → empty (everything);
/// `None` when it leaves the context (`..`).
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// One path segment against a pattern segment: `*`, `?`, `[…]`, `\\` escapes (Go's
/// filepath.Match, which both `COPY` sources and `.dockerignore` patterns follow).
pub fn glob_segment(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_segment(&p[1..], s) || (!s.is_empty() && glob_segment(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_segment(&p[1..], &s[1..]),
        (Some(b'['), Some(c)) => match p.iter().position(|b| *b == b']') {
            Some(end) => {
                let class = &p[1..end];
                // Go's filepath.Match negates with `^` only.
                let (negate, class) = match class.first() {
                    Some(b'^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && glob_segment(&p[end + 1..], &s[1..])
            }
            None => *c == b'[' && glob_segment(&p[1..], &s[1..]),
        },
        (Some(b'\\'), Some(c)) if p.len() > 1 => p[1] == *c && glob_segment(&p[2..], &s[1..]),
        (Some(a), Some(b)) => a == b && glob_segment(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const LAYERED: &str = r#"ARG FRAPPE_BRANCH=version-16
ARG FRAPPE_IMAGE_PREFIX=frappe

FROM ${FRAPPE_IMAGE_PREFIX}/build:${FRAPPE_BRANCH} AS builder

ARG FRAPPE_BRANCH=version-16
USER frappe
RUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json,uid=1000,gid=1000 \
  bench init \
    # a comment inside the continuation
    --frappe-branch=${FRAPPE_BRANCH} /home/frappe/frappe-bench

FROM ${FRAPPE_IMAGE_PREFIX}/base:${FRAPPE_BRANCH} AS backend
COPY --from=builder --chown=frappe:frappe /home/frappe/frappe-bench /home/frappe/frappe-bench
COPY resources/core/main-entrypoint.sh /usr/local/bin/entrypoint.sh
COPY ./resources/core/start.sh /usr/local/bin/start.sh
"#;

    #[test]
    fn the_layered_shape_reads_its_bases_and_two_files() {
        let r = reads(LAYERED, &args(&[("FRAPPE_BRANCH", "v15.1.0")])).unwrap();
        let bases: Vec<_> = r.bases.iter().map(|b| (b.reference.as_str(), b.line)).collect();
        assert_eq!(bases, [("frappe/build:v15.1.0", 4), ("frappe/base:v15.1.0", 13)]);
        assert_eq!(r.bases[0].written, "${FRAPPE_IMAGE_PREFIX}/build:${FRAPPE_BRANCH}");
        assert_eq!(
            r.context,
            ContextReads::Paths(vec!["resources/core/main-entrypoint.sh".into(), "resources/core/start.sh".into()])
        );
        let defaults = reads(LAYERED, &BTreeMap::new()).unwrap();
        assert_eq!(defaults.bases[0].reference, "frappe/build:version-16", "ARG defaults apply");
    }

    #[test]
    fn base_tag_takes_the_bases_from_another_tag_through_aliases() {
        let args = args(&[("FRAPPE_BRANCH", "v15.1.0")]);
        let r = resolve(LAYERED, &args, Some("version-15")).unwrap();
        let pairs: Vec<_> = r.bases.iter().map(|b| (b.pulled.as_str(), b.source.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("benchform-base/frappe/build:v15.1.0", "frappe/build:version-15"),
                ("benchform-base/frappe/base:v15.1.0", "frappe/base:version-15")
            ]
        );
        assert_eq!(r.build_args["FRAPPE_BRANCH"], "v15.1.0", "bench still clones the pinned tag");
        assert_eq!(r.build_args["FRAPPE_IMAGE_PREFIX"], "benchform-base/frappe");
        let plain = resolve(LAYERED, &args, None).unwrap();
        assert_eq!(plain.bases[0].pulled, plain.bases[0].source);
        let err = resolve("FROM debian:12\n", &args, Some("version-15")).unwrap_err();
        assert!(err.message.contains("nothing to take from tag version-15"), "{err}");
    }

    #[test]
    fn what_takes_the_whole_context_and_what_does_not() {
        let whole = |text: &str| reads(text, &BTreeMap::new()).unwrap().context;
        assert_eq!(whole("FROM a\nCOPY . /app\n"), ContextReads::Whole);
        assert_eq!(whole("FROM a\nCOPY ../x /app\n"), ContextReads::Whole, "leaving the context: take it all");
        assert_eq!(whole("FROM a\nRUN --mount=type=bind make\n"), ContextReads::Whole);
        assert_eq!(
            whole("FROM a\nRUN --mount=type=bind,source=src,target=/s make\n"),
            ContextReads::Paths(vec!["src".into()])
        );
        assert_eq!(whole("FROM a\nRUN --mount=type=cache,target=/c make\n"), ContextReads::Paths(vec![]));
        assert_eq!(
            whole("FROM a\nCOPY [\"x y\", \"b\", \"/d/\"]\n"),
            ContextReads::Paths(vec!["b".into(), "x y".into()])
        );
        let r = reads("FROM a\nADD https://example.com/f.tgz /f\nCOPY --from=nginx:1 /etc /etc\n", &BTreeMap::new())
            .unwrap();
        assert_eq!(r.remote, ["https://example.com/f.tgz"]);
        assert_eq!(r.bases.iter().map(|b| b.reference.as_str()).collect::<Vec<_>>(), ["a", "nginx:1"]);
        assert!(reads("# just a comment\n", &BTreeMap::new()).is_err());
    }

    #[test]
    fn stage_variables_expand_sources() {
        let text = "ARG DIR=glob\nFROM scratch\nARG DIR\nENV SUB=core\nCOPY res/${SUB}/*.sh $DIR/ /x/\n";
        let r = reads(text, &BTreeMap::new()).unwrap();
        assert!(r.bases.is_empty(), "scratch is no image");
        assert_eq!(r.context, ContextReads::Paths(vec!["glob".into(), "res/core/*.sh".into()]));
        assert!(r.context.takes("res/core/start.sh"));
        assert!(r.context.takes("glob/deep/file"), "a folder is taken whole");
        assert!(!r.context.takes("res/core/nginx/x.conf"));
        assert!(!r.context.takes("docs/index.md"));
        assert!(!r.context.takes("res"), "a parent of a pattern is not taken");
    }

    #[test]
    fn what_this_reader_cannot_know_takes_the_whole_context() {
        let context = |text: &str| reads(text, &BTreeMap::new()).unwrap().context;
        // TARGETARCH, the base image's ENV: the build may read another path.
        assert_eq!(context("FROM a\nCOPY bin/${TARGETARCH}/tool /x\n"), ContextReads::Whole);
        assert_eq!(context("FROM a\nCOPY $HOME/x /x\n"), ContextReads::Whole);
        assert_eq!(context("FROM a\nCOPY ${X#p} /x\n"), ContextReads::Whole);
        assert_eq!(
            context("FROM a\nARG D=src\nCOPY ${D}/ ${U:-u}/ /x\n"),
            ContextReads::Paths(vec!["src".into(), "u".into()])
        );
        // Not JSON after all: words, as the frontend falls back to.
        assert_eq!(context("FROM a\nCOPY [ab]*.txt /x/\n"), ContextReads::Paths(vec!["[ab]*.txt".into()]));
        assert!(ContextReads::Paths(vec!["[!a]".into()]).takes("!"), "`!` is no negation in Go's match");
    }

    #[test]
    fn here_documents_are_data_and_mounts_from_images_are_bases() {
        let text = "\u{feff}FROM a AS build\nCOPY <<EOF /app/conf.py\nfrom os import path\nCOPY secret /x\nEOF\nRUN <<-END\n\tFROM nothing\n\tEND\nRUN --mount=type=bind,from=tools:1,target=/t make\nCOPY real /y\n";
        let r = reads(text, &BTreeMap::new()).unwrap();
        assert_eq!(r.bases.iter().map(|b| b.reference.as_str()).collect::<Vec<_>>(), ["a", "tools:1"]);
        assert_eq!(r.context, ContextReads::Paths(vec!["real".into()]));
    }

    #[test]
    fn expansion_follows_the_frontend() {
        let vars = args(&[("A", "x"), ("E", "")]);
        assert_eq!(expand("${A}/$A-${B:-d}${A:+y}${E:+n}${E:-z}\\$A", &vars), "x/x-dyz$A");
    }
}
