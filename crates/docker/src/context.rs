//! The build context's digest: what the image tag hashes for "the files the build can see".
//!
//! Walks the context folder, leaves out what `.dockerignore` excludes (the same rules as
//! Docker: patterns relative to the context, `*`, `?`, `[…]`, `**` across folders, `!` to
//! re-include, the last matching pattern wins, an excluded folder excludes what is in it), and
//! hashes each file's relative path, executable bit and content — or a symlink's target — in
//! sorted order. Timestamps and owners do not count: they do not change what is built. Only the
//! files the build reads count (the caller says which, from the Containerfile).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use benchform_core::containerfile::ContextReads;
use sha2::{Digest, Sha256};

/// Why the context could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the build context {path}: {detail}")]
pub struct ContextError {
    pub path: String,
    pub detail: String,
}

/// One `.dockerignore` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Vec<String>,
    include: bool,
}

/// The rules of a `.dockerignore` text.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (include, p) = match l.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, l),
                };
                let pattern = p
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_string)
                    .collect();
                Rule { pattern, include }
            })
            .collect();
        Ignore { rules }
    }

    /// Is this relative path (`a/b/c`) excluded from the context?
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut excluded = false;
        for rule in &self.rules {
            // A rule matches the path or any of its parent folders.
            let hit = (1..=parts.len()).any(|n| glob_parts(&rule.pattern, &parts[..n]));
            if hit {
                excluded = !rule.include;
            }
        }
        excluded
    }
}

fn glob_parts(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(p), _) if p == "**" => (0..=path.len()).any(|skip| glob_parts(&pattern[1..], &path[skip..])),
        (Some(_), None) => false,
        (Some(p), Some(s)) => {
            benchform_core::containerfile::glob_segment(p.as_bytes(), s.as_bytes())
                && glob_parts(&pattern[1..], &path[1..])
        }
    }
}

/// The hex SHA-256 digest of the context files the build reads (`reads`) among those
/// `.dockerignore` lets through. A symlink on the way to what it reads points somewhere this walk
/// does not follow: then the whole context counts, as a missed input is never safe.
pub fn context_digest(dir: &Path, reads: &ContextReads) -> Result<String, ContextError> {
    let err = |path: &Path, e: std::io::Error| ContextError { path: path.display().to_string(), detail: e.to_string() };
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(err(&dir.join(".dockerignore"), e)),
    };
    let mut files: Vec<String> = Vec::new();
    let mut through_link = false;
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() { dir.to_path_buf() } else { dir.join(&rel) };
        for entry in std::fs::read_dir(&full).map_err(|e| err(&full, e))? {
            let entry = entry.map_err(|e| err(&full, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let kind = entry.file_type().map_err(|e| err(&entry.path(), e))?;
            // An excluded folder may hold re-included files (`!`), so folders are always walked.
            if kind.is_dir() {
                stack.push(child);
            } else if !ignore.excluded(&child) {
                if kind.is_symlink() && reads.reaches(&child) {
                    through_link = true;
                }
                files.push(child);
            }
        }
    }
    if !through_link {
        files.retain(|rel| reads.takes(rel));
    }
    files.sort();
    let mut hasher = Sha256::new();
    for rel in &files {
        let path = dir.join(rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| err(&path, e))?;
            hasher.update(b"L");
            hasher.update(target.to_string_lossy().as_bytes());
        } else {
            hasher.update(if meta.permissions().mode() & 0o111 != 0 { b"X" } else { b"F" });
            let mut file = std::fs::File::open(&path).map_err(|e| err(&path, e))?;
            let mut content = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(|e| err(&path, e))?;
                if n == 0 {
                    break;
                }
                content.update(&buf[..n]);
            }
            hasher.update(content.finalize());
        }
        hasher.update([b'\n']);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules_follow_docker() {
        let ig = Ignore::parse("# comment\n.git\n*.md\n!README.md\ndocs/**/*.png\n/build\n");
        assert!(ig.excluded(".git/config"));
        assert!(ig.excluded("CHANGES.md"));
        assert!(!ig.excluded("README.md"));
        assert!(!ig.excluded("sub/CHANGES.md"), "*.md is anchored at the context root");
        assert!(ig.excluded("docs/a/b/x.png"));
        assert!(ig.excluded("docs/x.png"));
        assert!(ig.excluded("build/out"));
        assert!(!ig.excluded("images/layered/Containerfile"));
        assert!(Ignore::parse("**/*.pyc").excluded("a/b/c.pyc"));
        assert!(Ignore::parse("file[0-9].txt").excluded("file3.txt"));
    }

    #[test]
    fn digest_sees_content_and_mode_but_not_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/Containerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "notes.txt\n").unwrap();
        let base = context_digest(dir.path(), &ContextReads::Whole).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        assert_eq!(context_digest(dir.path(), &ContextReads::Whole).unwrap(), base, "ignored files do not count");
        std::fs::write(dir.path().join("images/Containerfile"), "FROM busybox\n").unwrap();
        let changed = context_digest(dir.path(), &ContextReads::Whole).unwrap();
        assert_ne!(changed, base);
        let f = dir.path().join("images/Containerfile");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(context_digest(dir.path(), &ContextReads::Whole).unwrap(), changed, "the executable bit counts");
    }

    #[test]
    fn only_what_the_build_reads_counts_unless_a_symlink_leads_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("res")).unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("res/start.sh"), "a").unwrap();
        std::fs::write(dir.path().join("docs.md"), "a").unwrap();
        let reads = ContextReads::Paths(vec!["res/start.sh".into()]);
        let base = context_digest(dir.path(), &reads).unwrap();
        std::fs::write(dir.path().join("docs.md"), "b").unwrap();
        assert_eq!(context_digest(dir.path(), &reads).unwrap(), base, "a file the build does not read");
        std::fs::write(dir.path().join("res/start.sh"), "b").unwrap();
        assert_ne!(context_digest(dir.path(), &reads).unwrap(), base);
        // A link the build follows: its target must count too.
        std::fs::remove_file(dir.path().join("res/start.sh")).unwrap();
        std::fs::write(dir.path().join("scripts/start.sh"), "c").unwrap();
        std::os::unix::fs::symlink("../scripts/start.sh", dir.path().join("res/start.sh")).unwrap();
        let linked = context_digest(dir.path(), &reads).unwrap();
        std::fs::write(dir.path().join("scripts/start.sh"), "d").unwrap();
        assert_ne!(context_digest(dir.path(), &reads).unwrap(), linked, "the link's target counts");
    }
}
