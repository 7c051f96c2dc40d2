//! Python-compatible JSON output and a Python literal parser.
//!
//! frappe writes and prints JSON with Python's `json` module, whose spacing
//! differs from serde_json's (`["a", "b"]` on one line, `indent=1` with sorted
//! keys for `site_config.json`, `\uXXXX` escapes for non-ASCII). benchform
//! parses these outputs, so the fixture reproduces them byte for byte rather
//! than "equivalent JSON". `set-config -p` evaluates its value with
//! `ast.literal_eval`; [`literal_eval`] implements the literal subset that
//! makes sense in a config file.

use serde_json::{Map, Number, Value};

/// `json.dumps(value, indent=indent, sort_keys=sort_keys)` with Python's
/// defaults otherwise (`ensure_ascii=True`, separators `", "`/`": "` without
/// indent and `","`/`": "` with it).
pub fn dumps(value: &Value, indent: Option<usize>, sort_keys: bool) -> String {
    let mut out = String::new();
    write_value(&mut out, value, indent, sort_keys, 0);
    out
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(n * level));
    }
}

fn write_value(out: &mut String, value: &Value, indent: Option<usize>, sort_keys: bool, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => quote(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                newline(out, indent, level + 1);
                write_value(out, item, indent, sort_keys, level + 1);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            if sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                newline(out, indent, level + 1);
                quote(out, key);
                out.push_str(": ");
                if let Some(v) = map.get(*key) {
                    write_value(out, v, indent, sort_keys, level + 1);
                }
            }
            newline(out, indent, level);
            out.push('}');
        }
    }
}

/// Python's float `repr` differs from Rust's `Display` for integral values
/// (`1.0` vs `1`) and for large or tiny magnitudes (`1e+16`).
fn number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else { return n.to_string() };
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if f.fract() == 0.0 { format!("{f:.1}") } else { format!("{f}") }
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A subset of `ast.literal_eval`: str (single, double or triple quotes,
/// adjacent literals concatenated), int (decimal, hex, octal, binary,
/// underscores), float, `True`/`False`/`None`, list, tuple and dict, with
/// unary minus/plus on numbers. Tuples become JSON arrays and non-string dict
/// keys are converted the way `json.dumps` converts them. Errors carry the
/// Python exception line (`ValueError: …` / `SyntaxError: …`).
pub fn literal_eval(src: &str) -> Result<Value, String> {
    let mut p = Parser { chars: src.chars().collect(), pos: 0 };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.chars.len() {
        return Err("SyntaxError: invalid syntax".to_owned());
    }
    Ok(v)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

const MALFORMED: &str = "ValueError: malformed node or string";

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        match self.peek() {
            None => Err("SyntaxError: invalid syntax".to_owned()),
            Some('[') => {
                self.pos += 1;
                Ok(Value::Array(self.sequence(']')?))
            }
            Some('(') => {
                self.pos += 1;
                if self.eat(')') {
                    return Ok(Value::Array(Vec::new()));
                }
                let first = self.value()?;
                if self.eat(')') {
                    // `(x)` is just a parenthesised value, not a tuple.
                    return Ok(first);
                }
                if !self.eat(',') {
                    return Err("SyntaxError: invalid syntax".to_owned());
                }
                let mut items = vec![first];
                items.extend(self.sequence(')')?);
                Ok(Value::Array(items))
            }
            Some('{') => {
                self.pos += 1;
                self.dict()
            }
            Some(c) if c == '\'' || c == '"' => self.strings(),
            Some(c) if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                // String prefixes: u"", r"", and their upper-case forms.
                if matches!(word.as_str(), "u" | "U" | "r" | "R") && matches!(self.peek(), Some('\'' | '"')) {
                    return self.strings_raw(word.eq_ignore_ascii_case("r"));
                }
                match word.as_str() {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::Null),
                    _ => Err(MALFORMED.to_owned()),
                }
            }
            Some(_) => Err("SyntaxError: invalid syntax".to_owned()),
        }
    }

    /// Items up to `close`, comma separated, trailing comma allowed.
    fn sequence(&mut self, close: char) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(',') {
                return Err("SyntaxError: invalid syntax".to_owned());
            }
        }
    }

    fn dict(&mut self) -> Result<Value, String> {
        let mut map = Map::new();
        loop {
            if self.eat('}') {
                return Ok(Value::Object(map));
            }
            let key = self.value()?;
            if !self.eat(':') {
                // `{1, 2}` is a set: literal_eval accepts it, JSON cannot hold it.
                return Err("TypeError: Object of type set is not JSON serializable".to_owned());
            }
            let value = self.value()?;
            let key = match key {
                Value::String(s) => s,
                Value::Null => "null".to_owned(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => number(&n),
                _ => return Err("TypeError: unhashable type: 'list'".to_owned()),
            };
            map.insert(key, value);
            if self.eat('}') {
                return Ok(Value::Object(map));
            }
            if !self.eat(',') {
                return Err("SyntaxError: invalid syntax".to_owned());
            }
        }
    }

    fn strings(&mut self) -> Result<Value, String> {
        self.strings_raw(false)
    }

    /// One or more adjacent string literals (`'a' "b"` is `'ab'`).
    fn strings_raw(&mut self, raw: bool) -> Result<Value, String> {
        let mut out = self.string(raw)?;
        loop {
            self.skip_ws();
            match self.peek() {
                Some('\'' | '"') => out.push_str(&self.string(false)?),
                _ => return Ok(Value::String(out)),
            }
        }
    }

    fn string(&mut self, raw: bool) -> Result<String, String> {
        let Some(q) = self.peek() else { return Err("SyntaxError: invalid syntax".to_owned()) };
        let triple = self.chars.get(self.pos..self.pos + 3) == Some(&[q, q, q][..]);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("SyntaxError: unterminated string literal".to_owned());
            };
            if c == q {
                if !triple {
                    self.pos += 1;
                    return Ok(out);
                }
                if self.chars.get(self.pos..self.pos + 3) == Some(&[q, q, q][..]) {
                    self.pos += 3;
                    return Ok(out);
                }
            }
            if c == '\n' && !triple {
                return Err("SyntaxError: unterminated string literal".to_owned());
            }
            self.pos += 1;
            if c != '\\' || raw {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err("SyntaxError: unterminated string literal".to_owned());
            };
            self.pos += 1;
            match e {
                '\n' => {}
                '\\' | '\'' | '"' => out.push(e),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '0'..='7' => {
                    let mut n = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                n = n * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                }
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let digits: String = self.chars.get(self.pos..self.pos + len).unwrap_or(&[]).iter().collect();
                    let code = u32::from_str_radix(&digits, 16)
                        .ok()
                        .filter(|_| digits.len() == len)
                        .and_then(char::from_u32)
                        .ok_or_else(|| "SyntaxError: (unicode error) truncated escape".to_owned())?;
                    self.pos += len;
                    out.push(code);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let mut negative = false;
        while let Some(c @ ('-' | '+')) = self.peek() {
            negative ^= c == '-';
            self.pos += 1;
            self.skip_ws();
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            // An exponent sign belongs to the number: `1e-3`.
            let prev = self.peek();
            self.pos += 1;
            if matches!(prev, Some('e' | 'E')) && matches!(self.peek(), Some('-' | '+')) {
                let is_hex = self.chars[start..self.pos].starts_with(&['0', 'x'])
                    || self.chars[start..self.pos].starts_with(&['0', 'X']);
                if !is_hex {
                    self.pos += 1;
                }
            }
        }
        let text: String = self.chars[start..self.pos].iter().filter(|c| **c != '_').collect();
        if text.is_empty() {
            return Err(MALFORMED.to_owned());
        }
        let lower = text.to_ascii_lowercase();
        let radix = [("0x", 16), ("0o", 8), ("0b", 2)].into_iter().find(|(p, _)| lower.starts_with(p));
        let syntax = || "SyntaxError: invalid syntax".to_owned();
        if let Some((prefix, radix)) = radix {
            let n = i64::from_str_radix(&lower[prefix.len()..], radix).map_err(|_| syntax())?;
            return Ok(Value::from(if negative { -n } else { n }));
        }
        if lower.ends_with('j') {
            return Err(MALFORMED.to_owned());
        }
        if lower.contains(['.', 'e']) || lower.contains("inf") {
            let f: f64 = lower.parse().map_err(|_| syntax())?;
            let f = if negative { -f } else { f };
            return Number::from_f64(f).map(Value::Number).ok_or_else(|| MALFORMED.to_owned());
        }
        if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') {
            return Err("SyntaxError: leading zeros in decimal integer literals are not permitted".to_owned());
        }
        match lower.parse::<i64>() {
            Ok(n) => Ok(Value::from(if negative { -n } else { n })),
            Err(_) => {
                let n: u64 = lower.parse().map_err(|_| syntax())?;
                if negative { Err("ValueError: integer out of range".to_owned()) } else { Ok(Value::from(n)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumps_matches_python_spacing() {
        let v = json!(["frappe", "erpnext"]);
        assert_eq!(dumps(&v, None, false), r#"["frappe", "erpnext"]"#);
        let v = json!({"b": 1, "a": {"x": [1, 2.5, 1.0]}, "c": []});
        assert_eq!(dumps(&v, None, true), r#"{"a": {"x": [1, 2.5, 1.0]}, "b": 1, "c": []}"#);
        assert_eq!(
            dumps(&v, Some(1), true),
            "{\n \"a\": {\n  \"x\": [\n   1,\n   2.5,\n   1.0\n  ]\n },\n \"b\": 1,\n \"c\": []\n}"
        );
        assert_eq!(dumps(&json!("é\n\"\u{1F600}"), None, false), r#""\u00e9\n\"\ud83d\ude00""#);
        assert_eq!(dumps(&json!(1e16), None, false), "1e+16");
        assert_eq!(dumps(&json!(1.5e-7), None, false), "1.5e-07");
    }

    #[test]
    fn literal_eval_subset() {
        assert_eq!(
            literal_eval("{'a': 1, \"b\": [True, None, (1, 2)], 3: 'x'}").unwrap(),
            json!({"a": 1, "b": [true, null, [1, 2]], "3": "x"})
        );
        assert_eq!(literal_eval("-1_000").unwrap(), json!(-1000));
        assert_eq!(literal_eval("0x1F").unwrap(), json!(31));
        assert_eq!(literal_eval("1e3").unwrap(), json!(1000.0));
        assert_eq!(literal_eval("-2.5").unwrap(), json!(-2.5));
        assert_eq!(literal_eval("'a' \"b\"").unwrap(), json!("ab"));
        assert_eq!(literal_eval(r"'tab\there\x41\u00e9'").unwrap(), json!("tab\there\u{41}é"));
        assert_eq!(literal_eval("(5)").unwrap(), json!(5));
        assert_eq!(literal_eval("(5,)").unwrap(), json!([5]));
        assert_eq!(literal_eval("[1, 2,]").unwrap(), json!([1, 2]));
        assert_eq!(literal_eval("'''multi\nline'''").unwrap(), json!("multi\nline"));
        assert!(literal_eval("foo").unwrap_err().starts_with("ValueError"));
        assert!(literal_eval("[1, 2").unwrap_err().starts_with("SyntaxError"));
        assert!(literal_eval("{1, 2}").is_err());
        assert!(literal_eval("1 2").is_err());
    }
}
