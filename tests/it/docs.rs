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
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_benchform")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    std::process::Command::new("timeout")
        .args(["--kill-after=10", "1200", "bash", "-euo", "pipefail", "-c", script])
        .current_dir(root())
        .env("WORK", work)
        .env("PATH", path)
        .env("NO_COLOR", "1")
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
