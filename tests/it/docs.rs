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

#[test]
fn getting_started_on_the_local_world_converges() {
    let world = World::get();
    let work = tempfile::tempdir().unwrap();
    let script = block("docs/getting-started.md", "local-world");
    assert!(script.contains("benchform apply --auto-approve"), "{script}");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_benchform")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(root())
        .env("WORK", work.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();

    // Clean up whatever it made, then judge.
    let manifest = std::fs::read_to_string(work.path().join("benchform.yaml")).unwrap_or_default();
    let project = manifest.lines().find_map(|l| l.strip_prefix("project: ")).unwrap_or_default().trim().to_string();
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
