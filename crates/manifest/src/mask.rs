//! The one way benchform masks secret values (tokens, passwords) in text it shows or logs.

/// Secret values to replace by `***`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masker {
    /// Longest first, so that a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    /// Values shorter than this are not masked: they would mask ordinary words, and no real token
    /// or password is that short.
    pub const MIN_LEN: usize = 4;

    pub fn new(secrets: impl IntoIterator<Item = String>) -> Masker {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= Self::MIN_LEN).collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Masker { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// The values it masks (to look for them, e.g. in an image's history).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_skips_short_values() {
        let m = Masker::new(["abcd".to_string(), "abcd1234".to_string(), "xy".to_string(), "abcd".to_string()]);
        assert_eq!(m.mask("t=abcd1234 p=abcd xy"), "t=*** p=*** xy");
        assert_eq!(m.secrets().len(), 2);
    }
}
