//! Problems found in a manifest or lock, each with a stable code, a position and a hint.

use std::fmt;

/// How bad a problem is. Errors make `validate` exit 1; warnings never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($variant:ident => $text:literal, $doc:literal;)*) => {
        /// Every diagnostic code benchform can emit. The strings are a public contract: CI
        /// scripts match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $(#[doc = $doc] $variant,)* }

        impl Code {
            /// All codes, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)* }
            }

            /// One line on what the code means.
            pub fn describe(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }
        }
    };
}

codes! {
    ManifestNotFound => "manifest-not-found", "No manifest file where benchform looked.";
    ReadFailed => "read-failed", "The manifest file exists but could not be read.";
    NotUtf8 => "not-utf8", "The file is not UTF-8 text.";
    YamlSyntax => "yaml-syntax", "The file is not valid YAML.";
    DuplicateKey => "duplicate-key", "A mapping names the same key twice.";
    YamlLimit => "yaml-limit", "The document is too large, too deep, or expands too far through aliases.";
    EmptyManifest => "empty-manifest", "The file holds no YAML document.";
    MultipleDocuments => "multiple-documents", "The file holds more than one YAML document.";
    ComplexKey => "complex-key", "A mapping key is a list or mapping.";
    UnknownField => "unknown-field", "A key the manifest format does not have.";
    MissingField => "missing-field", "A required key is absent.";
    WrongType => "wrong-type", "A value of the wrong type (text, number, list, mapping, true/false).";
    InvalidValue => "invalid-value", "A value outside the allowed set or range.";
    UnsupportedVersion => "unsupported-version", "A manifest version this benchform does not understand.";
    InvalidProject => "invalid-project", "The project name is not a valid compose project name.";
    InvalidAppName => "invalid-app-name", "An app name is not a Python module name.";
    DuplicateApp => "duplicate-app", "The same app is listed twice under `apps`.";
    FrappeInApps => "frappe-in-apps", "frappe is listed under `apps`; it is implicit.";
    EmptyRef => "empty-ref", "A git ref is empty.";
    InvalidRef => "invalid-ref", "A git ref that git or bench cannot use as a branch or tag name.";
    CommitRef => "commit-ref", "A git ref that is a commit id; bench clones with --branch, which needs a branch or tag.";
    InvalidUrl => "invalid-url", "A repository URL that cannot be parsed.";
    UnsupportedUrlScheme => "unsupported-url-scheme", "A repository URL scheme the image build cannot clone (ssh, git@host:…).";
    FileUrl => "file-url", "A file:// repository URL: benchform can lock it, but an image build cannot reach it.";
    CredentialsInUrl => "credentials-in-url", "A repository URL that embeds a user name, password or token.";
    InsecureTokenUrl => "insecure-token-url", "A token would be sent over plain http.";
    InvalidEnvName => "invalid-env-name", "An environment variable name that is not valid.";
    InvalidTokenUser => "invalid-token-user", "A token_user that is not a plain user name (it could redirect the token to another host).";
    ImageHasTag => "image-has-tag", "image.repository carries a tag or digest; benchform computes the tag.";
    InvalidImageReference => "invalid-image-reference", "image.repository is not a valid image reference.";
    ReservedBuildArg => "reserved-build-arg", "A build argument benchform sets itself, or one that must be a secret.";
    InvalidBuildArg => "invalid-build-arg", "A build argument name that is not valid.";
    SecretLikeBuildArg => "secret-like-build-arg", "A build argument whose name suggests a secret: build arguments are kept in image history.";
    InvalidServiceName => "invalid-service-name", "A compose service name that is not valid.";
    NoComposeFiles => "no-compose-files", "deploy.compose.files is empty.";
    ComposeWithoutImage => "compose-without-image", "No compose file takes its image from ${CUSTOM_IMAGE} or names image.repository (a rendered file, pwd.yml).";
    UnsupportedOverride => "unsupported-override", "A frappe_docker override benchform cannot deploy with (the migrator, Postgres).";
    EmptyPath => "empty-path", "A file or folder path is empty.";
    InvalidSiteName => "invalid-site-name", "A site name that is not a lowercase DNS name.";
    DuplicateSite => "duplicate-site", "The same site is listed twice.";
    SiteNamedLikeApp => "site-named-like-app", "A site named like an app (Frappe v16 refuses it).";
    UnknownSiteApp => "unknown-site-app", "A site lists an app that is not under `apps`.";
    DuplicateSiteApp => "duplicate-site-app", "A site lists the same app twice.";
    ImplicitFrappe => "implicit-frappe", "A site lists frappe, which every site has anyway.";
    BuildOnLocalWithoutPush => "build-on-local-without-push", "image.build_on: local with image.push: false: the deploy engine could never get the image.";
    SwarmWithoutPush => "swarm-without-push", "deploy.target: swarm with image.push: false: the swarm's other nodes could never get the image.";
    SwarmCanary => "swarm-canary", "deploy.target: swarm with rollout.canary: canaries run in a one-off compose container, which a swarm has not.";
    UnknownCanarySite => "unknown-canary-site", "rollout.canary names a site that is not under `sites`, or one twice.";
    InvalidSmokeCommand => "invalid-smoke-command", "rollout.smoke has an empty argument or one with control characters.";
    MissingPath => "missing-path", "A file or folder the manifest names does not exist (here).";
    Schema => "schema", "Any other schema violation.";
    LockMissing => "lock-missing", "There is no benchform.lock next to the manifest.";
    LockOutOfDate => "lock-out-of-date", "benchform.lock does not pin exactly what the manifest names.";
    RefNotFound => "ref-not-found", "The remote has no branch or tag of that name.";
    BranchRef => "branch-ref", "A ref is a branch while policy.immutable_refs requires tags.";
    AmbiguousRef => "ambiguous-ref", "A name that is both a branch and a tag (bench would clone the branch).";
    RemoteAuth => "remote-auth", "The remote wants credentials, or rejected them.";
    RemoteNotFound => "remote-not-found", "The remote has no such repository.";
    RemoteUnreachable => "remote-unreachable", "The remote could not be reached.";
    RemoteError => "remote-error", "Any other failure talking to the remote.";
    TagMoved => "tag-moved", "A locked tag now points at another commit: a published tag was rewritten.";
    RefGone => "ref-gone", "A locked ref no longer exists on the remote.";
    RefKindChanged => "ref-kind-changed", "A locked ref changed between tag and branch on the remote.";
    BranchAdvanced => "branch-advanced", "A locked branch has new commits (lock --update takes them).";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    /// The file as the user named it.
    pub file: String,
    /// 1-based; `None` only where no position exists (missing file, undecodable bytes).
    pub line: Option<usize>,
    /// 1-based, in characters of the file's line.
    pub column: Option<usize>,
    pub hint: Option<String>,
    /// The offending source line as shown, credentials masked; safe to print.
    pub snippet: Option<Snippet>,
}

/// A source line as shown under a diagnostic, and where its marker goes. Masking a credential
/// shortens the line, so the marker's place on it can differ from the file's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The line, credentials masked.
    pub text: String,
    /// 1-based character column of the marker on `text`.
    pub column: usize,
    /// How many characters of `text` the marker covers (at least 1).
    pub width: usize,
}

impl Snippet {
    /// `line` masked by `mask`, with the marker (1-based `column`, `width` characters) moved to
    /// where the same text is on the masked line: a masked secret before the marker shifts it
    /// left, one inside it shortens it.
    pub fn masked(line: &str, column: usize, width: usize, mask: impl Fn(&str) -> String) -> Snippet {
        // Private-use characters mark the span's ends through the masking. A line holding them
        // already, or a secret that a mark splits (masking the result again would still change
        // it), falls back to the whole line masked and the unmoved marker, clamped.
        const START: char = '\u{F8FE}';
        const END: char = '\u{F8FF}';
        let chars: Vec<char> = line.chars().collect();
        let at = column.saturating_sub(1).min(chars.len());
        let to = (at + width).min(chars.len());
        let marked: String =
            chars[..at].iter().chain(&[START]).chain(&chars[at..to]).chain(&[END]).chain(&chars[to..]).collect();
        let masked = mask(&marked);
        let position = |c: char| masked.chars().position(|m| m == c);
        let text: String = masked.chars().filter(|c| *c != START && *c != END).collect();
        match (line.contains([START, END]), position(START), position(END)) {
            (false, Some(s), Some(e)) if s < e && mask(&text) == text => {
                Snippet { text, column: s + 1, width: (e - s - 1).max(1) }
            }
            _ => {
                let text = mask(line);
                let width = width.min(text.chars().count().saturating_sub(at)).max(1);
                Snippet { text, column, width }
            }
        }
    }
}

impl Diagnostic {
    /// A diagnostic about a whole file, with no position.
    pub fn unplaced(file: &str, severity: Severity, code: Code, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic { severity, code, message, file: file.to_string(), line: None, column: None, hint, snippet: None }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `s` safe to print on a terminal: control characters (C0 but newline and tab, DEL, C1) and
/// bidirectional overrides become visible escapes (`\u001b`), so text from a manifest, lock or
/// plan file can never move the cursor, erase lines or reorder what is shown. The escape is
/// JSON's own, so JSON output escaped this way stays valid JSON (and decodes to the original).
pub fn escape_controls(s: &str) -> String {
    s.chars().map(escape_char).collect()
}

/// One character as [`escape_controls`] shows it.
pub fn escape_char(c: char) -> String {
    let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    // Every character escaped here is in the Basic Multilingual Plane: four hex digits suffice.
    if (c.is_control() && c != '\n' && c != '\t') || bidi { format!("\\u{:04x}", u32::from(c)) } else { c.to_string() }
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        assert_eq!(escape_controls("a\x1b[2Kb\u{9b}c\u{202e}d\te\nf\x7f"), "a\\u001b[2Kb\\u009bc\\u202ed\te\nf\\u007f");
        // Inside a JSON string the escape is JSON's own: the text stays valid JSON.
        let json = serde_json::json!({"s": "x\u{202e}y\u{9b}"}).to_string();
        let back: serde_json::Value = serde_json::from_str(&escape_controls(&json)).unwrap();
        assert_eq!(back["s"], "x\u{202e}y\u{9b}");
        assert_eq!(escape_controls("erp.example.com"), "erp.example.com");
    }

    #[test]
    fn markers_follow_masked_secrets() {
        let mask = |t: &str| t.replace("secret-token", "***");
        let line = r#"- { repo: "https://secret-token@h/x", name: Bad-Name }"#;
        // After the secret: shifted left by what the mask removed.
        let after = Snippet::masked(line, line.find("Bad").unwrap() + 1, 8, mask);
        assert_eq!(&after.text[after.column - 1..][..8], "Bad-Name");
        // Over the secret: shortened to what is shown.
        let over =
            Snippet::masked(line, line.find("\"https").unwrap() + 1, r#""https://secret-token@h/x""#.len(), mask);
        assert_eq!(&over.text[over.column - 1..][..over.width], r#""https://***@h/x""#);
        // A marker inside the secret must not let it through.
        let inside = Snippet::masked(line, line.find("token").unwrap() + 1, 3, mask);
        assert!(!inside.text.contains("secret-token"), "{}", inside.text);
        // Nothing masked: unchanged.
        let plain = Snippet::masked("name: x", 7, 1, |t: &str| t.to_string());
        assert_eq!((plain.text.as_str(), plain.column, plain.width), ("name: x", 7, 1));
    }
}
