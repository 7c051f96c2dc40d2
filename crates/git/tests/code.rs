//! Reading an app's files at locked commits through the cache, against real repositories served
//! over smart HTTP with token auth.

// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use benchform_git::{Auth, CodeCache, GitError};
use benchform_gitserver::{GitServer, ServerConfig, TestRepo};

const TOKEN: &str = "s3cret-token-for-code-tests";

fn auth(token: &str) -> Auth {
    Auth { user: "x-access-token".into(), token: token.into() }
}

#[test]
fn files_at_locked_commits_are_read_once_fetched_and_compared() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "private/acme.git").unwrap();
    let v1 = repo
        .commit_files(
            "v1",
            &[
                ("acme/patches.txt", "[pre_model_sync]\nacme.patches.v1_0.a\n[post_model_sync]\n"),
                ("acme/sales/doctype/order/order.json", "{\"fields\": []}"),
                ("acme/sales/doctype/item/item.json", "{\"fields\": []}"),
            ],
        )
        .unwrap();
    repo.tag_annotated("v1.0.0", &v1).unwrap();
    let v2 = repo
        .commit_files(
            "v2",
            &[
                ("acme/patches.txt", "[pre_model_sync]\nacme.patches.v1_0.a\nacme.patches.v1_1.b\n[post_model_sync]\n"),
                ("acme/sales/doctype/order/order.json", "{\"fields\": [\"total\"]}"),
            ],
        )
        .unwrap();
    repo.tag_lightweight("v1.1.0", &v2).unwrap();
    let mut config = ServerConfig::new(root.path());
    config.token = Some(TOKEN.to_string());
    let server = GitServer::start(config).unwrap();
    let url = server.repo_url("private/acme.git");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = CodeCache::new(cache_dir.path().join("git"));

    // Without the token, and with a wrong one, the errors say so and name no token.
    match cache.open(&url, None, "v1.0.0", &v1) {
        Err(GitError::AuthRequired { .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    match cache.open(&url, Some(&auth("wrong")), "v1.0.0", &v1) {
        Err(e @ GitError::AuthRejected { .. }) => assert!(!e.to_string().contains("wrong")),
        other => panic!("{:?}", other.err()),
    }

    // Two plans side by side share the cache.
    let (a, b) = std::thread::scope(|s| {
        let one = s.spawn(|| cache.open(&url, Some(&auth(TOKEN)), "v1.0.0", &v1).map(|_| ()));
        let two = s.spawn(|| cache.open(&url, Some(&auth(TOKEN)), "v1.1.0", &v2).map(|_| ()));
        (one.join().unwrap(), two.join().unwrap())
    });
    a.unwrap();
    b.unwrap();
    let cached = cache.open(&url, Some(&auth(TOKEN)), "v1.1.0", &v2).unwrap();
    let text = String::from_utf8(cached.read(&v2, "acme/patches.txt").unwrap().unwrap()).unwrap();
    assert!(text.contains("acme.patches.v1_1.b"), "{text}");
    assert_eq!(cached.read(&v1, "acme/hooks.py").unwrap(), None);
    let mut changed = cached.changed_paths(&v1, &v2).unwrap();
    changed.sort();
    assert_eq!(changed, ["acme/patches.txt", "acme/sales/doctype/order/order.json", "content.txt"]);

    // The token is nowhere in the cache: it only travelled through the credentials callback.
    for entry in walk(cache_dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "{}", entry.display());
    }

    // Once fetched, commits are read without the network.
    drop(server);
    let offline = cache.open(&url, Some(&auth(TOKEN)), "v1.0.0", &v1).unwrap();
    assert!(offline.read(&v1, "acme/patches.txt").unwrap().is_some());
    // A commit it never fetched needs the server, and says it could not reach it.
    let v3 = repo.commit("v3").unwrap();
    match cache.open(&url, Some(&auth(TOKEN)), "main", &v3) {
        Err(GitError::Unreachable { .. }) => {}
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_commit_the_ref_moved_away_from_is_named() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "app.git").unwrap();
    let c1 = repo.commit("one").unwrap();
    let c2 = repo.commit("two").unwrap();
    repo.branch("stable", &c2).unwrap();
    let server = GitServer::start(ServerConfig::new(root.path())).unwrap();
    let url = server.repo_url("app.git");
    let cache = CodeCache::new(tempfile::tempdir().unwrap().keep());
    cache.open(&url, None, "stable", &c2).unwrap();
    match cache.open(&url, None, "stable", &c1) {
        // The server handed the commit out by id, or refused and the error says what happened.
        Ok(cached) => assert!(cached.read(&c1, "content.txt").unwrap().is_some()),
        Err(e) => assert!(e.to_string().contains("no longer what `stable` names"), "{e}"),
    }
    assert!(matches!(cache.open(&url, None, "stable", "not-a-commit"), Err(GitError::Other { .. })));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}
