//! ls-remote against real repositories over file:// and smart HTTP with token auth.

// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use benchform_git::{Auth, GitError, ls_remote};
use benchform_gitserver::{GitServer, ServerConfig, TestRepo};
use benchform_manifest::lock::{RefKind, resolve_ref};

const TOKEN: &str = "s3cret-token-for-tests";

fn world() -> (tempfile::TempDir, GitServer, TestRepo, TestRepo) {
    let root = tempfile::tempdir().unwrap();
    let public = TestRepo::create(root.path(), "app.git").unwrap();
    let private = TestRepo::create(root.path(), "private/secret_app.git").unwrap();
    for repo in [&public, &private] {
        let c1 = repo.commit("one").unwrap();
        repo.tag_lightweight("v1.0.0", &c1).unwrap();
        let c2 = repo.commit("two").unwrap();
        repo.tag_annotated("v1.1.0", &c2).unwrap();
    }
    let mut config = ServerConfig::new(root.path());
    config.token = Some(TOKEN.to_string());
    let server = GitServer::start(config).unwrap();
    (root, server, public, private)
}

fn auth(token: &str) -> Auth {
    Auth { user: "x-access-token".into(), token: token.into() }
}

#[test]
fn lists_and_resolves_over_http_and_file() {
    let (_root, server, public, _private) = world();
    for url in [server.repo_url("app.git"), public.file_url()] {
        let refs = ls_remote(&url, None).unwrap();
        let light = resolve_ref(&refs, "v1.0.0").unwrap();
        assert_eq!(light.kind, RefKind::Tag);
        assert_eq!(light.object, None);
        let annotated = resolve_ref(&refs, "v1.1.0").unwrap();
        assert!(annotated.object.is_some());
        assert_ne!(annotated.object.as_deref(), Some(annotated.commit.as_str()));
        assert_eq!(resolve_ref(&refs, "main").unwrap().kind, RefKind::Branch);
        assert_eq!(resolve_ref(&refs, "main").unwrap().commit, annotated.commit);
    }
}

#[test]
fn private_repositories_need_the_right_token() {
    let (_root, server, _public, _private) = world();
    let url = server.repo_url("private/secret_app.git");
    assert!(ls_remote(&url, Some(&auth(TOKEN))).is_ok());

    let missing = ls_remote(&url, None).unwrap_err();
    assert_eq!(missing, GitError::AuthRequired { repo: url.clone() });
    let wrong = ls_remote(&url, Some(&auth("wrong-token"))).unwrap_err();
    assert_eq!(wrong, GitError::AuthRejected { repo: url.clone() });
    for e in [missing, wrong] {
        assert!(!format!("{e} {e:?}").contains(TOKEN));
    }
    assert!(!format!("{:?}", auth(TOKEN)).contains(TOKEN));
}

#[test]
fn missing_repositories_and_dead_servers_are_distinct_errors() {
    let (_root, server, _public, _private) = world();
    let missing = ls_remote(&server.repo_url("nope.git"), None).unwrap_err();
    assert!(matches!(missing, GitError::NotFound { .. }), "{missing:?}");

    let addr = server.addr();
    drop(server);
    let dead = ls_remote(&format!("http://{addr}/app.git"), None).unwrap_err();
    assert!(matches!(dead, GitError::Unreachable { .. }), "{dead:?}");

    let gone = ls_remote("file:///nonexistent/benchform/repo.git", None).unwrap_err();
    assert!(matches!(gone, GitError::NotFound { .. }), "{gone:?}");
}

#[test]
fn a_moved_tag_is_seen_moved() {
    let (_root, server, public, _private) = world();
    let url = server.repo_url("app.git");
    let before = resolve_ref(&ls_remote(&url, None).unwrap(), "v1.0.0").unwrap().commit;
    let c3 = public.commit("three").unwrap();
    public.move_tag("v1.0.0", &c3).unwrap();
    let after = resolve_ref(&ls_remote(&url, None).unwrap(), "v1.0.0").unwrap().commit;
    assert_ne!(before, after);
    assert_eq!(after, c3);
}

/// A server whose response bodies end when it closes the connection (no Content-Length, no
/// chunking) is not "unreachable": libgit2 reaches it and cannot read its answer, and the error
/// says so.
#[test]
fn a_body_ended_by_closing_the_connection_is_named_for_what_it_is() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "app.git").unwrap();
    let c = repo.commit("one").unwrap();
    repo.tag_lightweight("v1.0.0", &c).unwrap();
    let config = ServerConfig { close_delimited: true, ..ServerConfig::new(root.path()) };
    let server = GitServer::start(config).unwrap();
    let url = server.repo_url("app.git");
    match ls_remote(&url, None) {
        // A libgit2 that frames such bodies lists the refs, which is as good.
        Ok(refs) => assert!(resolve_ref(&refs, "v1.0.0").is_ok()),
        Err(e) => {
            assert!(matches!(e, GitError::BadResponse { .. }), "{e:?}");
            assert!(e.to_string().starts_with(&format!("{url} answered, but its answer could not be read")), "{e}");
        }
    }
}
