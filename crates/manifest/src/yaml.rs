//! A small YAML document model that keeps a source position on every node.
//!
//! serde-based YAML crates stop at the first problem and forget where values came from; benchform
//! must report *all* problems in a manifest, each at its `line:column`. So the manifest is first read
//! into this tree (events from `saphyr-parser`), then converted to a JSON value for schema
//! validation, while the tree stays around to turn any JSON path back into a position.
//!
//! Hostile input is bounded: input size, nesting depth and the number of nodes produced (which is
//! what an alias bomb inflates) all have limits, so parsing neither hangs nor exhausts memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as RawSpan};
use serde_json::Value;

/// Largest document accepted, in bytes. Manifests are a few KiB; this only stops accidents.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting accepted. Manifests need about six levels.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to, aliases included (stops "billion laughs").
pub const MAX_NODES: usize = 100_000;

/// A 1-based line and column (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Where a node sits in the source. `end` is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    fn from_raw(raw: RawSpan) -> Span {
        let conv = |m: saphyr_parser::Marker| Pos { line: m.line(), column: m.col() + 1 };
        Span { start: conv(raw.start), end: conv(raw.end) }
    }

    /// How many characters to underline: the span's width on its first line, at least one.
    pub fn width_on_first_line(&self) -> usize {
        if self.end.line == self.start.line && self.end.column > self.start.column {
            self.end.column - self.start.column
        } else {
            1
        }
    }
}

/// How a scalar was written, which decides its type (a quoted `"15.10"` is a string, a plain
/// `15.10` is a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar { text: String, style: Style, tag: Option<String> },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
    /// Nodes in this subtree, itself included; used to bound alias expansion.
    size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
}

/// A problem found while reading YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub kind: YamlProblemKind,
    pub message: String,
    pub pos: Option<Pos>,
    pub width: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlProblemKind {
    Syntax,
    DuplicateKey,
    Limit,
    Empty,
    MultipleDocuments,
    ComplexKey,
}

/// The result of reading: a document (absent when reading could not finish) and every problem met.
#[derive(Debug)]
pub struct Parsed {
    pub root: Option<Node>,
    pub problems: Vec<YamlProblem>,
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: RawSpan,
        anchor: usize,
        size: usize,
    },
    Map {
        entries: Vec<Entry>,
        /// Key text → line of its first occurrence, to find duplicates in constant time.
        seen: HashMap<String, usize>,
        pending_key: Option<Node>,
        start: RawSpan,
        anchor: usize,
        size: usize,
    },
}

/// Read one YAML document. Duplicate keys are reported and the first occurrence is kept, so that
/// later checks still see the rest of the document.
pub fn parse(source: &str) -> Parsed {
    let mut problems = Vec::new();
    if source.len() > MAX_INPUT_BYTES {
        problems.push(YamlProblem {
            kind: YamlProblemKind::Limit,
            message: format!("the document is {} bytes, more than the {MAX_INPUT_BYTES} benchform reads", source.len()),
            pos: None,
            width: 1,
        });
        return Parsed { root: None, problems };
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut total_nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    for item in Parser::new_from_str(source) {
        let (event, raw_span) = match item {
            Ok(ev) => ev,
            Err(err) => {
                let m = err.marker();
                let (kind, message) = if err.info().contains("recursion limit") {
                    (YamlProblemKind::Limit, format!("nesting too deep ({})", err.info()))
                } else {
                    (YamlProblemKind::Syntax, format!("YAML syntax error: {}", err.info()))
                };
                problems.push(YamlProblem {
                    kind,
                    message,
                    pos: Some(Pos { line: m.line(), column: m.col() + 1 }),
                    width: 1,
                });
                return Parsed { root: None, problems };
            }
        };
        let span = Span::from_raw(raw_span);
        let finished: Option<(Node, usize)> = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    problems.push(YamlProblem {
                        kind: YamlProblemKind::MultipleDocuments,
                        message: "the file holds more than one YAML document (a second `---`)".to_string(),
                        pos: Some(span.start),
                        width: 3,
                    });
                    break;
                }
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let node = Node { kind: NodeKind::Scalar { text: text.into_owned(), style, tag }, span, size: 1 };
                Some((node, anchor))
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    problems.push(limit_problem(format!("nesting deeper than {MAX_DEPTH} levels"), span));
                    return Parsed { root: None, problems };
                }
                stack.push(Frame::Seq { items: Vec::new(), start: raw_span, anchor, size: 1 });
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    problems.push(limit_problem(format!("nesting deeper than {MAX_DEPTH} levels"), span));
                    return Parsed { root: None, problems };
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    seen: HashMap::new(),
                    pending_key: None,
                    start: raw_span,
                    anchor,
                    size: 1,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, start, anchor, size }) => {
                    Some((Node { kind: NodeKind::Seq(items), span: Span::from_raw(start), size }, anchor))
                }
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { entries, start, anchor, size, .. }) => {
                    Some((Node { kind: NodeKind::Map(entries), span: Span::from_raw(start), size }, anchor))
                }
                _ => None,
            },
            Event::Alias(id) => match anchors.get(&id) {
                // The alias takes the position of its use, so problems inside it point somewhere.
                Some(target) => Some((relocate(target.clone(), span), 0)),
                None => {
                    problems.push(YamlProblem {
                        kind: YamlProblemKind::Syntax,
                        message: "YAML syntax error: alias to an unknown anchor".to_string(),
                        pos: Some(span.start),
                        width: 1,
                    });
                    return Parsed { root: None, problems };
                }
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
        };

        let Some((node, anchor)) = finished else { continue };
        total_nodes = total_nodes.saturating_add(node.size);
        if total_nodes > MAX_NODES {
            problems.push(limit_problem(
                format!(
                    "the document expands to more than {MAX_NODES} values (an alias bomb?); \
                     benchform stops reading here"
                ),
                span,
            ));
            return Parsed { root: None, problems };
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        attach(&mut stack, &mut root, node, &mut problems);
    }

    if root.is_none() && problems.is_empty() {
        problems.push(YamlProblem {
            kind: YamlProblemKind::Empty,
            message: "the manifest is empty".to_string(),
            pos: None,
            width: 1,
        });
    }
    Parsed { root, problems }
}

fn limit_problem(message: String, span: Span) -> YamlProblem {
    YamlProblem { kind: YamlProblemKind::Limit, message, pos: Some(span.start), width: 1 }
}

fn relocate(mut node: Node, span: Span) -> Node {
    node.span = span;
    node
}

fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node, problems: &mut Vec<YamlProblem>) {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, size, .. }) => {
            *size += node.size;
            items.push(node);
        }
        Some(Frame::Map { entries, seen, pending_key, size, .. }) => {
            *size += node.size;
            match pending_key.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar { .. }) {
                        problems.push(YamlProblem {
                            kind: YamlProblemKind::ComplexKey,
                            message: "a mapping key must be a plain name, not a list or mapping".to_string(),
                            pos: Some(node.span.start),
                            width: 1,
                        });
                    }
                    *pending_key = Some(node);
                }
                Some(key) => {
                    let text = scalar_text(&key).map(str::to_string);
                    let duplicate_of = match text {
                        Some(text) => match seen.get(&text) {
                            Some(line) => Some(*line),
                            None => {
                                seen.insert(text, key.span.start.line);
                                None
                            }
                        },
                        None => None,
                    };
                    match duplicate_of {
                        Some(first_line) => problems.push(YamlProblem {
                            kind: YamlProblemKind::DuplicateKey,
                            message: format!(
                                "duplicate key `{}` (first given on line {first_line}); \
                                 YAML keeps only one of them",
                                scalar_text(&key).unwrap_or_default()
                            ),
                            pos: Some(key.span.start),
                            width: key.span.width_on_first_line(),
                        }),
                        None => entries.push(Entry { key, value: node }),
                    }
                }
            }
        }
    }
}

fn scalar_text(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

impl Node {
    /// The scalar's source text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        scalar_text(self)
    }

    /// Is this a plain (unquoted) scalar whose YAML type is not a string?
    pub fn is_unquoted_non_string(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { style: Style::Plain, tag: None, text }
            if !matches!(resolve_plain(text), Value::String(_)))
    }

    /// Follow a JSON-pointer-like path of object keys and array indexes.
    pub fn lookup<'a, S: AsRef<str>>(&'a self, path: &[S]) -> Option<&'a Node> {
        let mut node = self;
        for seg in path {
            node = node.child(seg.as_ref())?;
        }
        Some(node)
    }

    /// The entry (key and value) that `key` names in this mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| scalar_text(&e.key) == Some(key)),
            _ => None,
        }
    }

    fn child(&self, seg: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(_) => self.entry(seg).map(|e| &e.value),
            NodeKind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            NodeKind::Scalar { .. } => None,
        }
    }

    /// Convert to JSON, resolving plain scalars with the YAML 1.2 core schema (so `yes` stays a
    /// string and `15.10` becomes the number 15.1, exactly as a YAML 1.2 reader would see them).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar { text, style, tag } => match (style, tag.as_deref()) {
                (_, Some("!!str")) | (Style::Quoted | Style::Block, _) => Value::String(text.clone()),
                (Style::Plain, _) => resolve_plain(text),
            },
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    // Non-scalar keys were reported while parsing; they have no JSON form.
                    .filter_map(|e| Some((scalar_text(&e.key)?.to_string(), e.value.to_json())))
                    .collect(),
            ),
        }
    }
}

/// YAML 1.2 core-schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned, 10) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = text.trim_start_matches('+').parse::<u64>() {
            return Value::from(u);
        }
    }
    if let Some(oct) = text.strip_prefix("0o").filter(|s| digits(s, 8))
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::from(i);
    }
    if let Some(hex) = text.strip_prefix("0x").filter(|s| digits(s, 16))
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::from(i);
    }
    if is_core_float(unsigned)
        && let Some(n) = text.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// `[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?` or `\.[0-9]+(...)?`, sign already stripped.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    };
    mantissa_ok && exponent_ok && (frac.is_some() || exponent.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(src: &str) -> Value {
        parse(src).root.expect("document").to_json()
    }

    #[test]
    fn plain_scalars_follow_the_yaml_1_2_core_schema() {
        let v = json("a: 15.10\nb: '15.10'\nc: yes\nd: ~\ne: 0x1F\nf: v15.1\ng: 1e3\nh: true\ni: -7\n");
        assert_eq!(v["a"], serde_json::json!(15.1));
        assert_eq!(v["b"], "15.10");
        assert_eq!(v["c"], "yes");
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], 31);
        assert_eq!(v["f"], "v15.1");
        assert_eq!(v["g"], serde_json::json!(1000.0));
        assert_eq!(v["h"], true);
        assert_eq!(v["i"], -7);
    }

    #[test]
    fn positions_are_one_based() {
        let parsed = parse("top:\n  inner: value\n");
        let root = parsed.root.unwrap();
        let entry = root.lookup(&["top"]).unwrap().entry("inner").unwrap();
        assert_eq!(entry.key.span.start, Pos { line: 2, column: 3 });
        assert_eq!(entry.value.span.start, Pos { line: 2, column: 10 });
        assert_eq!(entry.value.span.width_on_first_line(), 5);
    }

    #[test]
    fn duplicate_keys_are_reported_and_the_first_kept() {
        let parsed = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(parsed.problems.len(), 1);
        assert_eq!(parsed.problems[0].kind, YamlProblemKind::DuplicateKey);
        assert_eq!(parsed.problems[0].pos, Some(Pos { line: 3, column: 1 }));
        assert_eq!(parsed.root.unwrap().to_json()["a"], 1);
    }

    #[test]
    fn alias_bombs_stop_at_the_node_limit() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            src.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = name;
        }
        let parsed = parse(&src);
        assert!(parsed.root.is_none());
        assert_eq!(parsed.problems[0].kind, YamlProblemKind::Limit);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let flow = "[".repeat(10_000);
        let block: String = (0..100).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        for src in [flow, block] {
            let parsed = parse(&src);
            assert!(parsed.root.is_none());
            assert_eq!(parsed.problems[0].kind, YamlProblemKind::Limit, "{:?}", parsed.problems);
        }
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let parsed = parse("a: [1, 2\nb: 3\n");
        assert_eq!(parsed.problems[0].kind, YamlProblemKind::Syntax);
        assert!(parsed.problems[0].pos.is_some());
    }

    #[test]
    fn empty_and_multi_document_inputs_are_problems() {
        assert_eq!(parse("# nothing\n").problems[0].kind, YamlProblemKind::Empty);
        assert_eq!(parse("a: 1\n---\nb: 2\n").problems[0].kind, YamlProblemKind::MultipleDocuments);
    }
}
