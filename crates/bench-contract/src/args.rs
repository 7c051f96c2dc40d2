//! Hand-rolled argv parsing with click's rules and click's error messages.
//!
//! bench's commands are click commands, and benchform builds argv arrays for
//! them. What matters is that the fixture accepts exactly what click accepts
//! (`--opt value`, `--opt=value`, `-f json`, `-fjson`, combined short flags
//! `-gp`, `--` to end options, options between positionals) and rejects the
//! rest the way click does: a usage block and `Error: …` on stderr, exit 2.

use std::collections::HashMap;

use crate::out::{Fail, flush};

/// What an option takes.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A boolean flag.
    Flag,
    /// One value; repeated use keeps the last.
    Value,
    /// One value per use, all kept (`--install-app a --install-app b`).
    Multi,
    /// One value out of a fixed set (`click.Choice`).
    Choice(&'static [&'static str]),
}

/// One option: every spelling (`&["--format", "-f"]`) and its kind. The
/// first spelling is the key results are stored under.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub names: &'static [&'static str],
    pub kind: Kind,
}

pub const fn flag(names: &'static [&'static str]) -> Opt {
    Opt { names, kind: Kind::Flag }
}

pub const fn value(names: &'static [&'static str]) -> Opt {
    Opt { names, kind: Kind::Value }
}

pub const fn multi(names: &'static [&'static str]) -> Opt {
    Opt { names, kind: Kind::Multi }
}

pub const fn choice(names: &'static [&'static str], choices: &'static [&'static str]) -> Opt {
    Opt { names, kind: Kind::Choice(choices) }
}

/// A command's interface: how it is shown in usage lines, its options and
/// its positional arguments (`required` names first, then `optional`; a
/// trailing `...` in the last name means "any number").
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// e.g. `bench frappe new-site`.
    pub prog: &'static str,
    pub opts: &'static [Opt],
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
}

/// Parsed arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    values: HashMap<&'static str, Vec<String>>,
    pub positionals: Vec<String>,
}

impl Parsed {
    pub fn flag(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn values(&self, key: &str) -> &[String] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn positional(&self, i: usize) -> Option<&str> {
        self.positionals.get(i).map(String::as_str)
    }
}

impl Spec {
    fn usage_line(&self) -> String {
        let mut line = format!("Usage: {} [OPTIONS]", self.prog);
        for name in self.required {
            line.push(' ');
            line.push_str(name);
        }
        for name in self.optional {
            line.push_str(&format!(" [{name}]"));
        }
        line
    }

    /// click's `UsageError` output: usage, hint, blank line, error; exit 2.
    pub fn usage_error(&self, message: &str) -> Fail {
        flush();
        eprintln!("{}\nTry '{} --help' for help.\n\nError: {message}", self.usage_line(), self.prog);
        Fail(2)
    }

    fn help(&self) -> Fail {
        println!("{}\n\nOptions:", self.usage_line());
        for opt in self.opts {
            let names = opt.names.join(", ");
            match opt.kind {
                Kind::Flag => println!("  {names}"),
                Kind::Choice(c) => println!("  {names} [{}]", c.join("|")),
                Kind::Value | Kind::Multi => println!("  {names} TEXT"),
            }
        }
        println!("  --help  Show this message and exit.");
        Fail(0)
    }

    fn find(&self, name: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.names.contains(&name))
    }

    /// Parses `args` (everything after the command name). `Err(Fail(0))`
    /// means `--help` was printed.
    pub fn parse(&self, args: &[String]) -> Result<Parsed, Fail> {
        let mut parsed = Parsed::default();
        let mut i = 0;
        let mut only_positionals = false;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if only_positionals || arg == "-" || !arg.starts_with('-') {
                parsed.positionals.push(arg.clone());
                continue;
            }
            if arg == "--" {
                only_positionals = true;
                continue;
            }
            if arg == "--help" {
                return Err(self.help());
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (format!("--{n}"), Some(v.to_owned())),
                    None => (arg.clone(), None),
                };
                let Some(opt) = self.find(&name) else {
                    return Err(self.usage_error(&format!("No such option: {name}")));
                };
                if let Kind::Flag = opt.kind {
                    if inline.is_some() {
                        return Err(self.usage_error(&format!("Option '{name}' does not take a value.")));
                    }
                    parsed.values.entry(opt.names[0]).or_default().push(String::new());
                    continue;
                }
                let value = match inline {
                    Some(v) => v,
                    None => match args.get(i) {
                        Some(v) => {
                            i += 1;
                            v.clone()
                        }
                        None => return Err(self.usage_error(&format!("Option '{name}' requires an argument."))),
                    },
                };
                self.store(&mut parsed, opt, value)?;
                continue;
            }
            // Short options, possibly combined: `-gp`, `-fjson`, `-f json`.
            let shorts: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < shorts.len() {
                let name = format!("-{}", shorts[j]);
                j += 1;
                let Some(opt) = self.find(&name) else {
                    return Err(self.usage_error(&format!("No such option: {name}")));
                };
                if let Kind::Flag = opt.kind {
                    parsed.values.entry(opt.names[0]).or_default().push(String::new());
                    continue;
                }
                let rest: String = shorts[j..].iter().collect();
                let value = if !rest.is_empty() {
                    rest
                } else if let Some(v) = args.get(i) {
                    i += 1;
                    v.clone()
                } else {
                    return Err(self.usage_error(&format!("Option '{name}' requires an argument.")));
                };
                self.store(&mut parsed, opt, value)?;
                break;
            }
        }
        let variadic = self.required.iter().chain(self.optional).any(|n| n.ends_with("..."));
        if parsed.positionals.len() < self.required.len() {
            let missing = self.required[parsed.positionals.len()].trim_end_matches("...");
            return Err(self.usage_error(&format!("Missing argument '{missing}'.")));
        }
        let max = self.required.len() + self.optional.len();
        if !variadic && parsed.positionals.len() > max {
            let extra = &parsed.positionals[max..];
            let word = if extra.len() == 1 { "argument" } else { "arguments" };
            return Err(self.usage_error(&format!("Got unexpected extra {word} ({})", extra.join(" "))));
        }
        Ok(parsed)
    }

    fn store(&self, parsed: &mut Parsed, opt: &Opt, value: String) -> Result<(), Fail> {
        if let Kind::Choice(choices) = opt.kind
            && !choices.contains(&value.as_str())
        {
            let names = opt.names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(" / ");
            let allowed = choices.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
            return Err(self.usage_error(&format!("Invalid value for {names}: '{value}' is not one of {allowed}.")));
        }
        let slot = parsed.values.entry(opt.names[0]).or_default();
        if let Kind::Multi = opt.kind {
            slot.push(value);
        } else {
            *slot = vec![value];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        prog: "bench frappe set-config",
        opts: &[
            flag(&["--global", "-g"]),
            flag(&["--parse", "-p"]),
            choice(&["--format", "-f"], &["text", "json"]),
            multi(&["--install-app"]),
            value(&["--db-name"]),
        ],
        required: &["KEY", "VALUE"],
        optional: &[],
    };

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn click_like_forms() {
        let p = SPEC
            .parse(&args(&["-gp", "k", "--install-app", "a", "--install-app=b", "-fjson", "--db-name", "x", "v"]))
            .unwrap();
        assert!(p.flag("--global") && p.flag("--parse"));
        assert_eq!(p.values("--install-app"), ["a", "b"]);
        assert_eq!(p.value("--format"), Some("json"));
        assert_eq!(p.value("--db-name"), Some("x"));
        assert_eq!(p.positionals, ["k", "v"]);
        let p = SPEC.parse(&args(&["--", "-k", "-v"])).unwrap();
        assert_eq!(p.positionals, ["-k", "-v"]);
    }

    #[test]
    fn click_like_errors_exit_2() {
        assert_eq!(SPEC.parse(&args(&["--nope", "k", "v"])).unwrap_err(), Fail(2));
        assert_eq!(SPEC.parse(&args(&["k"])).unwrap_err(), Fail(2));
        assert_eq!(SPEC.parse(&args(&["k", "v", "w"])).unwrap_err(), Fail(2));
        assert_eq!(SPEC.parse(&args(&["-f", "xml", "k", "v"])).unwrap_err(), Fail(2));
        assert_eq!(SPEC.parse(&args(&["k", "v", "--db-name"])).unwrap_err(), Fail(2));
    }
}
