//! Compose's env files (`--env-file`, `.env`), read the way Docker Compose v2 reads them, so that
//! benchform sees the values compose interpolates — upstream frappe_docker's `example.env` with
//! its `SITES_RULE=Host(`a`) || Host(`b`)` included, which stricter dotenv readers refuse.
//!
//! - `KEY=VALUE`, with an optional `export ` before the key; blank lines and `#` lines skipped;
//! - unquoted values end at the line's end or at ` #` (an inline comment), and are trimmed;
//!   `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR-default}` expand from keys read before and
//!   then from `lookup` (the process environment, for compose);
//! - `'single'` quotes are literal; `"double"` quotes expand variables and `\n`, `\t`, `\"`,
//!   `\\`, and may span lines;
//! - a key alone (`KEY`) takes its value from `lookup`, and is left out when that has none.

/// Where an env file cannot be read. Never its text: env files hold passwords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct EnvFileError {
    pub line: usize,
    pub problem: String,
}

/// The variables of an env file, in order (a later line wins for the same key).
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some(eq) = line.find('=') else {
            let key = line.trim();
            check_key(key, number)?;
            if let Some(v) = lookup(key) {
                out.push((key.to_string(), v));
            }
            continue;
        };
        let key = line[..eq].trim();
        check_key(key, number)?;
        let rest = line[eq + 1..].trim_start();
        // As compose: the environment first, then the keys read before.
        let known =
            |name: &str| lookup(name).or_else(|| out.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
        let value = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // The value runs to the closing quote, over several lines if need be.
                let mut body = rest[1..].to_string();
                let mut closed = find_close(&body, q);
                while closed.is_none() && i < lines.len() {
                    body.push('\n');
                    body.push_str(lines[i]);
                    i += 1;
                    closed = find_close(&body, q);
                }
                let Some(end) = closed else {
                    return Err(EnvFileError { line: number, problem: format!("{key} opens a quote it never closes") });
                };
                let inner = &body[..end];
                let after = body[end + 1..].trim();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err(EnvFileError {
                        line: number,
                        problem: format!("{key} has text after its closing quote"),
                    });
                }
                if q == '\'' {
                    inner.to_string()
                } else {
                    expand(&unescape(inner), &known)
                        .map_err(|p| EnvFileError { line: number, problem: format!("{key}: {p}") })?
                }
            }
            _ => {
                let value = match rest.find(" #").or_else(|| rest.find("\t#")) {
                    Some(at) => &rest[..at],
                    None => rest,
                };
                expand(value.trim_end(), &known)
                    .map_err(|p| EnvFileError { line: number, problem: format!("{key}: {p}") })?
            }
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The value of `key`: the last line that sets it.
pub fn get<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn check_key(key: &str, line: usize) -> Result<(), EnvFileError> {
    let ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(EnvFileError { line, problem: "not KEY=VALUE (the key is not a variable name)".to_string() })
    }
}

/// The closing quote's byte index in `body`, skipping `\"` in double quotes.
fn find_close(body: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if q == '"' && !escaped => escaped = true,
            c if c == q && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(c @ ('"' | '\\' | '$')) => {
                if c == '$' {
                    out.push('\\');
                }
                out.push(c)
            }
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:+a}`, `${VAR+a}`, `${VAR:?msg}`,
/// `${VAR?msg}` (braces may nest); `\$` and `$$` are a literal `$`. A `?` form whose variable is
/// missing is an error naming the variable, as compose stops there.
fn expand(s: &str, known: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('\\', Some('$')) | ('$', Some('$')) => {
                out.push('$');
                i += 2;
            }
            ('$', Some('{')) => {
                // The matching brace, nested ones counted.
                let mut depth = 0;
                let mut end = None;
                for (j, c) in chars.iter().enumerate().skip(i + 2) {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            end = Some(j);
                            break;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    out.extend(&chars[i..]);
                    break;
                };
                let inner: String = chars[i + 2..end].iter().collect();
                let name_len = inner.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
                let (name, op) = inner.split_at(name_len);
                let value = known(name);
                let set = value.is_some();
                let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                let (colon, op) = match op.strip_prefix(':') {
                    Some(rest) => (true, rest),
                    None => (false, op),
                };
                let present = if colon { non_empty } else { set };
                let word = op.get(1..).unwrap_or_default();
                match op.chars().next() {
                    None => out.push_str(&value.unwrap_or_default()),
                    Some('-') if present => out.push_str(&value.unwrap_or_default()),
                    Some('-') => out.push_str(&expand(word, known)?),
                    Some('+') if present => out.push_str(&expand(word, known)?),
                    Some('+') => {}
                    Some('?') if present => out.push_str(&value.unwrap_or_default()),
                    Some('?') => return Err(format!("${{{name}}} is required and not set")),
                    Some(_) => return Err(format!("`${{{name}…}}` is not a substitution compose knows")),
                }
                i = end + 1;
            }
            ('$', Some(c)) if c.is_ascii_alphabetic() || *c == '_' => {
                let len = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                out.push_str(&known(&name).unwrap_or_default());
                i += len + 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(String, String)> {
        parse(text, &|k| (k == "HOME_X").then(|| "/home/x".to_string())).unwrap()
    }

    #[test]
    fn upstream_example_env_lines_read_as_compose_reads_them() {
        let vars = read(
            "# comment\nERPNEXT_VERSION=v16.32.3\n\nDB_PASSWORD=123\nDB_HOST=\nSITES_RULE=Host(`a.example.com`) || Host(`b.example.com`)\nFRAPPE_SITE_NAME_HEADER=$$host\nexport X=1 # inline\n",
        );
        assert_eq!(get(&vars, "ERPNEXT_VERSION"), Some("v16.32.3"));
        assert_eq!(get(&vars, "DB_HOST"), Some(""));
        assert_eq!(get(&vars, "SITES_RULE"), Some("Host(`a.example.com`) || Host(`b.example.com`)"));
        assert_eq!(get(&vars, "FRAPPE_SITE_NAME_HEADER"), Some("$host"));
        assert_eq!(get(&vars, "X"), Some("1"));
    }

    #[test]
    fn quotes_escapes_and_expansion() {
        let vars = read(
            "A=one\nB=\"${A} two\\n\"\nC='${A} $A'\nD=${MISSING:-dflt}/${HOME_X}\nE=\"multi\nline\"\nHOME_X\nNOPE\n",
        );
        assert_eq!(get(&vars, "B"), Some("one two\n"));
        assert_eq!(get(&vars, "C"), Some("${A} $A"));
        assert_eq!(get(&vars, "D"), Some("dflt//home/x"));
        assert_eq!(get(&vars, "E"), Some("multi\nline"));
        assert_eq!(get(&vars, "HOME_X"), Some("/home/x"), "a key alone comes from the environment");
        assert_eq!(get(&vars, "NOPE"), None);
        let more = read(
            "A=1\nE=\nB=${A:+set}${E:+no}${E+empty-but-set}${A:-${NOPE:-deep}}${U:-${A}}\nHOME_X=file\nC=$HOME_X\n",
        );
        assert_eq!(get(&more, "B"), Some("setempty-but-set11"));
        assert_eq!(get(&more, "C"), Some("/home/x"), "the environment comes before the file, as in compose");
        let e = parse("A=${MISSING:?set it}\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.problem.contains("MISSING"), "{e}");
    }

    #[test]
    fn errors_name_the_line_never_the_value() {
        let e = parse("A=1\nB=\"secret-value\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(!e.to_string().contains("secret-value"), "{e}");
        assert_eq!(parse("not a line\n", &|_| None).unwrap_err().line, 1);
    }
}
