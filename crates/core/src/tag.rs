//! The content-addressed image tag.
//!
//! A tag names *what went into* an image, so "does the registry have this tag?" answers "must we
//! build?". The hash covers, in a fixed order, with every field length-prefixed:
//!
//! 1. the tag scheme (`benchform-image-tag/1`);
//! 2. frappe, then every app in manifest order: name, repository URL, locked commit;
//! 3. the containerfile's bytes (its SHA-256);
//! 4. every build argument benchform passes, sorted by name (the manifest's plus `FRAPPE_PATH`,
//!    `FRAPPE_BRANCH` and `CACHE_BUST`);
//! 5. the build network (empty for the engine's default);
//! 6. the images the build starts from, as named (`frappe/build:version-15`), and the network
//!    sources of its `ADD`s;
//! 7. the digest of the context files the build reads: those its `COPY`, `ADD` and bind mounts
//!    take (see [`crate::containerfile`]) that `.dockerignore` lets through — relative path,
//!    executable bit and content (`benchform-docker`'s `context` module). An edit anywhere else in
//!    the build context leaves the tag as it is.
//!
//! The tag is `bf1-` and the first 24 hex digits of that SHA-256: 96 bits, unique enough for
//! one project's images, short enough to read in a plan.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Everything that decides an image's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInputs {
    /// frappe first, then apps in manifest order: (name, repo, locked commit).
    pub sources: Vec<(String, String, String)>,
    /// SHA-256 (hex) of the containerfile's bytes.
    pub containerfile_sha256: String,
    /// Every build argument passed to the build.
    pub build_args: BTreeMap<String, String>,
    pub build_network: Option<String>,
    /// The images the build starts from, as they are really named (after `image.base_tag`).
    pub base_images: Vec<String>,
    /// Network sources of `ADD` instructions.
    pub remote_sources: Vec<String>,
    /// Digest (hex) of the context files the build reads.
    pub context_sha256: String,
}

/// The tag scheme's prefix; bump it when the hashed inputs change.
pub const TAG_PREFIX: &str = "bf1-";

impl ImageInputs {
    /// The content-addressed tag, e.g. `bf1-3f2a9c1d8e7b6a5f4e3d2c1b`.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        field(&mut h, "benchform-image-tag/2");
        for (name, repo, commit) in &self.sources {
            field(&mut h, name);
            field(&mut h, repo);
            field(&mut h, commit);
        }
        field(&mut h, &self.containerfile_sha256);
        for (k, v) in &self.build_args {
            field(&mut h, k);
            field(&mut h, v);
        }
        field(&mut h, self.build_network.as_deref().unwrap_or(""));
        for image in self.base_images.iter().chain(&self.remote_sources) {
            field(&mut h, image);
        }
        field(&mut h, &self.context_sha256);
        let hex = hex(&h.finalize());
        format!("{TAG_PREFIX}{}", &hex[..24])
    }
}

/// `CACHE_BUST`: changes whenever any locked commit changes, so BuildKit's layer cache (which
/// does not see the `apps_json` secret) never serves a stale image (frappe_docker #1887).
pub fn cache_bust(sources: &[(String, String, String)]) -> String {
    let mut h = Sha256::new();
    for (name, repo, commit) in sources {
        field(&mut h, name);
        field(&mut h, repo);
        field(&mut h, commit);
    }
    hex(&h.finalize())[..16].to_string()
}

fn field(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> ImageInputs {
        ImageInputs {
            sources: vec![
                ("frappe".into(), "https://h/frappe".into(), "a".repeat(40)),
                ("erpnext".into(), "https://h/erpnext".into(), "b".repeat(40)),
            ],
            containerfile_sha256: sha256_hex(b"FROM scratch"),
            build_args: BTreeMap::from([("FRAPPE_BRANCH".into(), "v15".into())]),
            build_network: None,
            base_images: vec!["frappe/build:version-15".into()],
            remote_sources: Vec::new(),
            context_sha256: sha256_hex(b""),
        }
    }

    #[test]
    fn the_tag_is_stable_and_short() {
        let tag = inputs().tag();
        assert_eq!(tag, inputs().tag());
        assert!(tag.starts_with("bf1-") && tag.len() == 28, "{tag}");
    }

    #[test]
    fn every_input_changes_the_tag() {
        let base = inputs().tag();
        let mut i = inputs();
        i.sources[1].2 = "c".repeat(40);
        assert_ne!(i.tag(), base, "a commit");
        let mut i = inputs();
        i.sources.swap(0, 1);
        assert_ne!(i.tag(), base, "the order");
        let mut i = inputs();
        i.containerfile_sha256 = sha256_hex(b"FROM busybox");
        assert_ne!(i.tag(), base, "the containerfile");
        let mut i = inputs();
        i.build_args.insert("X".into(), "1".into());
        assert_ne!(i.tag(), base, "a build arg");
        let mut i = inputs();
        i.build_network = Some("host".into());
        assert_ne!(i.tag(), base, "the network");
        let mut i = inputs();
        i.context_sha256 = sha256_hex(b"x");
        assert_ne!(i.tag(), base, "the context");
        let mut i = inputs();
        i.base_images[0] = "frappe/build:version-16".into();
        assert_ne!(i.tag(), base, "a base image");
        let mut i = inputs();
        i.remote_sources.push("https://example.com/x.tgz".into());
        assert_ne!(i.tag(), base, "a network source");
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let mut a = inputs();
        a.sources[0].0 = "frap".into();
        a.sources[0].1 = "pehttps://h/frappe".into();
        assert_ne!(a.tag(), inputs().tag());
    }
}
