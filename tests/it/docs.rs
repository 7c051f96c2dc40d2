//! The documentation's runnable paths, run. (Every `benchform …` line in the docs is also parsed
//! by a unit test of the command line, `src/cli.rs`.)

use crate::support::root;
use crate::world::World;

/// The lines between `<!-- NAME:begin -->` and `<!-- NAME:end -->` of a doc, code fences dropped.
fn block(doc: &str, name: &str) -> String {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let start = text.find(&begin).unwrap_or_else(|| panic!("{doc} has no {begin}")) + begin.len();
    let stop = text[start..].find(&end).unwrap_or_else(|| panic!("{doc} has no {end}")) + start;
    text[start..stop].lines().filter(|l| !l.trim_start().starts_with("```")).collect::<Vec<_>>().join("\n")
}

/// Run a doc block with bash in the repository's root, `WORK` set to a fresh folder and the
/// binary under test first on PATH. A block that hangs is killed after 20 minutes and fails with
/// what it printed, instead of stalling the suite.
fn run_block(script: &str, work: &std::path::Path) -> std::process::Output {
    run_block_with(script, work, &[])
}

/// The same, with more variables in the block's environment.
fn run_block_with(script: &str, work: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_benchform")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    std::process::Command::new("timeout")
        .args(["--kill-after=10", "1200", "bash", "-euo", "pipefail", "-c", script])
        .current_dir(root())
        .env("WORK", work)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The project of the manifest a doc block wrote in `work` (empty if it wrote none).
fn project_in(work: &std::path::Path) -> String {
    let manifest = std::fs::read_to_string(work.join("benchform.yaml")).unwrap_or_default();
    manifest.lines().find_map(|l| l.strip_prefix("project: ")).unwrap_or_default().trim().to_string()
}

#[test]
fn adopting_a_frappe_docker_deployment_on_the_local_world_converges() {
    let world = World::get();
    let work = tempfile::tempdir().unwrap();
    let script = block("docs/getting-started.md", "adopt-world");
    assert!(script.contains("images/layered/Containerfile") && script.contains("benchform init"), "{script}");
    let out = run_block(&script, work.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();

    // Clean up whatever it made (upstream's files, the project init wrote), then judge.
    let project = project_in(work.path());
    if !project.is_empty() {
        let upstream = crate::support::frappe_docker();
        let mut down = std::process::Command::new(world.docker_cli());
        down.args(["compose", "-p", &project, "--project-directory"]).arg(&upstream);
        for f in [
            "compose.yaml",
            "overrides/compose.mariadb.yaml",
            "overrides/compose.redis.yaml",
            "overrides/compose.noproxy.yaml",
        ] {
            down.arg("-f").arg(upstream.join(f));
        }
        let _ = down.args(["down", "-v"]).output();
        let _ = std::fs::remove_dir_all(world.git_root().join(&project));
    }
    assert!(out.status.success(), "the adoption path failed:\n{stdout}\n{stderr}");
    let first_plan = stdout.split("Apply complete").next().unwrap_or_default();
    assert!(first_plan.contains("never migrated by benchform"), "{stdout}");
    assert!(!first_plan.contains("new-site"), "the site exists: no new-site\n{stdout}");
    assert!(stdout.contains("Apply complete"), "{stdout}");
    assert!(
        stdout.trim_end().contains("No changes. The deployment matches benchform.yaml."),
        "the last plan is converged:\n{stdout}"
    );
}

#[test]
fn getting_started_on_the_local_world_converges() {
    let world = World::get();
    let work = tempfile::tempdir().unwrap();
    let script = block("docs/getting-started.md", "local-world");
    assert!(script.contains("benchform apply --auto-approve"), "{script}");
    let out = run_block(&script, work.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();

    // Clean up whatever it made, then judge.
    let project = project_in(work.path());
    if !project.is_empty() {
        let _ = crate::world::compose_command()
            .args(["-p", &project, "-f"])
            .arg(root().join("tests/fixtures/compose/compose.yaml"))
            .args(["down", "-v"])
            .env("CUSTOM_IMAGE", "none")
            .env("CUSTOM_TAG", "none")
            .output();
        let _ = std::fs::remove_dir_all(world.git_root().join(&project));
    }
    assert!(out.status.success(), "the getting-started path failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Apply complete"), "{stdout}");
    assert!(
        stdout.trim_end().contains("No changes. The deployment matches benchform.yaml."),
        "the last plan is converged:\n{stdout}"
    );
    assert!(stdout.contains("success"), "history lists the apply:\n{stdout}");
}

/// operations.md's rollback recipe, run as written on a deployment whose manifest lives in git:
/// release, write rows, `git revert`, plan with `--allow-restore`, apply: the site's data is what
/// it was before the release, and the plan converges.
#[test]
fn rolling_back_a_release_as_operations_md_says_brings_the_data_back() {
    let mut d = crate::status::Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true; // apply deploys; Drop takes the project down
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let ident = [
        ("GIT_AUTHOR_NAME", "ops"),
        ("GIT_AUTHOR_EMAIL", "ops@localhost"),
        ("GIT_COMMITTER_NAME", "ops"),
        ("GIT_COMMITTER_EMAIL", "ops@localhost"),
    ];
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(d.dir.path())
            .envs(ident.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "--quiet"]);
    git(&["add", "benchform.yaml", "benchform.lock"]);
    git(&["commit", "--quiet", "-m", "erpnext v15.1.0"]);
    d.write_rows("a.localhost", 4);
    let before = d.rows("a.localhost");
    d.release(1, "v15.1.0", "v15.2.0");
    git(&["commit", "--quiet", "-am", "erpnext v15.2.0"]);
    let upgrade = d.apply(&["--auto-approve"]);
    assert_eq!(upgrade.code, 0, "{}", upgrade.all());
    d.write_rows("a.localhost", 2);

    let script = block("docs/operations.md", "rollback");
    assert!(script.contains("--allow-restore"), "{script}");
    let mut env: Vec<(&str, &str)> = crate::status::apply_env().to_vec();
    env.extend(ident);
    let out = run_block_with(&script, d.dir.path(), &env);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "the rollback recipe failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("restored from its backup of"), "{stdout}");
    assert_eq!(d.rows("a.localhost"), before, "the site's data is what it was before the release");
}
