//! Ordering of version-like tags (`v15.88.1`, `15.10`, `v1.0.0-beta.2`), used to suggest the newest
//! tag and, later, to refuse downgrades.

use std::cmp::Ordering;

/// Compare two version-like strings: a leading `v` is ignored, numeric runs compare as numbers,
/// a pre-release suffix (`-beta`) sorts before the release.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_main, a_pre) = split_pre(strip_v(a));
    let (b_main, b_pre) = split_pre(strip_v(b));
    compare_chunks(a_main, b_main).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_chunks(x, y),
    })
}

/// Does this look like a version (digits and dots after an optional `v`)?
pub fn is_version_like(s: &str) -> bool {
    let (main, _) = split_pre(strip_v(s));
    !main.is_empty()
        && main.chars().next().is_some_and(|c| c.is_ascii_digit())
        && main.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The newest version-like tag, if any.
pub fn newest<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    tags.into_iter().filter(|t| is_version_like(t)).max_by(|a, b| compare(a, b))
}

fn strip_v(s: &str) -> &str {
    s.strip_prefix(['v', 'V']).unwrap_or(s)
}

fn split_pre(s: &str) -> (&str, Option<&str>) {
    match s.split_once('-') {
        Some((main, pre)) => (main, Some(pre)),
        None => (s, None),
    }
}

fn compare_chunks(a: &str, b: &str) -> Ordering {
    let mut xs = chunks(a);
    let mut ys = chunks(b);
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(p), Ok(q)) => p.cmp(&q),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Split into runs of digits and runs of other characters, dropping separators.
fn chunks(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(['.', '-', '_', '+']);
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit || matches!(c, '.' | '-' | '_' | '+'))
            .unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_an_operator_expects() {
        assert_eq!(compare("v15.10.0", "v15.9.3"), Ordering::Greater);
        assert_eq!(compare("15.88.1", "v15.88.1"), Ordering::Equal);
        assert_eq!(compare("v1.0.0-beta.2", "v1.0.0"), Ordering::Less);
        assert_eq!(compare("v1.0.0-beta.10", "v1.0.0-beta.2"), Ordering::Greater);
        assert_eq!(compare("v2", "v1.9.9"), Ordering::Greater);
    }

    #[test]
    fn newest_ignores_non_versions() {
        assert_eq!(newest(["v1.2.0", "v1.10.0", "latest", "v1.9.0"]), Some("v1.10.0"));
        assert_eq!(newest(["nightly"]), None);
    }
}
