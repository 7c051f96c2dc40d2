//! Image builds and pushes, through the Docker CLI.
//!
//! Why the CLI and not bollard: the app list must reach the build as a BuildKit **secret**
//! (`--secret id=apps_json,src=FILE`; a build argument would land in image history), and the plain
//! `/build` endpoint cannot pass secrets. bollard's BuildKit driver can, but pulls in gRPC and
//! ~100 crates. The CLI also honours every credential helper of the Docker config file on push,
//! and fails with a non-zero exit when the push stream carries an error.
//!
//! Which CLI: `BENCHFORM_DOCKER_CLI` if set, else Debian's `/usr/bin/docker` (20.10, BuildKit
//! without buildx) if present, else `docker` on PATH. A client without BuildKit support refuses
//! the build with its own message, which is passed on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Why a build or push failed. Output lines are already masked.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("`{cli} {verb}` could not be started: {detail}")]
    Spawn { cli: String, verb: String, detail: String },
    #[error("the image build failed (exit {code}); last output:\n{tail}")]
    BuildFailed { code: i32, tail: String },
    #[error("pushing {reference} failed (exit {code}): {tail}")]
    PushFailed { reference: String, code: i32, tail: String },
    #[error("pulling {reference} failed (exit {code}): {tail}")]
    PullFailed { reference: String, code: i32, tail: String },
}

/// A Docker CLI to run, with extra environment (the engine's, [`crate::Engine::client_env`]; an
/// empty value removes the variable).
#[derive(Debug, Clone)]
pub struct Cli {
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(program: impl Into<PathBuf>) -> Cli {
        Cli { program: program.into(), env: Vec::new() }
    }

    /// The Docker CLI ([`docker_cli`]) reaching `engine`, whatever the environment names.
    pub fn for_engine(engine: &crate::Engine) -> Cli {
        Cli { program: docker_cli(), env: engine.client_env() }
    }

    /// Run the Docker CLI with `args` to its end; what it printed and how it ended.
    pub async fn output(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.command().args(args).output().await
    }

    /// `docker cp FROM TO` (one side `container:path`), streamed over the run's connection to the
    /// engine: `Err` when the CLI cannot be started, `Ok(Err(what it said))` when the copy failed.
    pub async fn copy(&self, from: &str, to: &str) -> std::io::Result<Result<(), String>> {
        let out = self.output(&["cp", from, to]).await?;
        Ok(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) })
    }

    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        crate::engine::apply_client_env(&mut cmd, &self.env);
        // Its own process group: a Ctrl-C on the terminal reaches benchform, which ends the run in
        // order, not a build or push half-way.
        cmd.process_group(0);
        cmd
    }
}

/// The Docker CLI benchform builds and pushes with.
pub fn docker_cli() -> PathBuf {
    if let Some(cli) = std::env::var_os("BENCHFORM_DOCKER_CLI").filter(|v| !v.is_empty()) {
        return PathBuf::from(cli);
    }
    let debian = Path::new("/usr/bin/docker");
    if debian.exists() { debian.to_path_buf() } else { PathBuf::from("docker") }
}

/// One BuildKit build.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    pub context: &'a Path,
    pub containerfile: &'a Path,
    /// The full reference to tag, `repository:tag`.
    pub reference: &'a str,
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    /// The file holding the `apps_json` secret (benchform passes an in-memory file, `/proc/<pid>/fd/<n>`).
    pub apps_json: &'a Path,
    pub network: Option<&'a str>,
    pub no_cache: bool,
}

impl BuildSpec<'_> {
    /// The argv after the program name. Secrets appear only as a file path.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["build".to_string(), "--progress=plain".to_string()];
        args.extend(["-f".to_string(), self.containerfile.display().to_string()]);
        args.extend(["--secret".to_string(), format!("id=apps_json,src={}", self.apps_json.display())]);
        for (k, v) in self.build_args {
            args.extend(["--build-arg".to_string(), format!("{k}={v}")]);
        }
        for (k, v) in self.labels {
            args.extend(["--label".to_string(), format!("{k}={v}")]);
        }
        if let Some(net) = self.network {
            args.extend(["--network".to_string(), net.to_string()]);
        }
        if self.no_cache {
            args.push("--no-cache".to_string());
        }
        args.extend(["-t".to_string(), self.reference.to_string(), self.context.display().to_string()]);
        args
    }
}

/// Run a build, streaming masked output lines to `on_line`. Never times out: real Frappe builds
/// take many minutes.
pub async fn build(
    cli: &Cli,
    spec: &BuildSpec<'_>,
    secrets: &[String],
    on_line: impl FnMut(&str),
) -> Result<(), BuildError> {
    let mut cmd = cli.command();
    cmd.args(spec.args()).env("DOCKER_BUILDKIT", "1");
    let (code, tail) = stream(cmd, &cli.program, "build", secrets, on_line).await?;
    if code != 0 {
        return Err(BuildError::BuildFailed { code, tail });
    }
    Ok(())
}

/// Push `reference`; returns the manifest digest the registry reported.
pub async fn push(
    cli: &Cli,
    reference: &str,
    secrets: &[String],
    on_line: impl FnMut(&str),
) -> Result<Option<String>, BuildError> {
    let mut cmd = cli.command();
    cmd.args(["push", reference]);
    let mut digest = None;
    let mut on_line = on_line;
    let (code, tail) = stream(cmd, &cli.program, "push", secrets, |line: &str| {
        if let Some(d) = line.split("digest: ").nth(1).and_then(|r| r.split_whitespace().next()) {
            digest = Some(d.to_string());
        }
        on_line(line)
    })
    .await?;
    if code != 0 {
        return Err(BuildError::PushFailed { reference: reference.to_string(), code, tail });
    }
    Ok(digest)
}

/// Pull `reference` (credentials from the Docker config file, as for a push).
pub async fn pull(cli: &Cli, reference: &str, on_line: impl FnMut(&str)) -> Result<(), BuildError> {
    let mut cmd = cli.command();
    cmd.args(["pull", reference]);
    let (code, tail) = stream(cmd, &cli.program, "pull", &[], on_line).await?;
    if code != 0 {
        return Err(BuildError::PullFailed { reference: reference.to_string(), code, tail });
    }
    Ok(())
}

/// Run a command, merging stdout and stderr line by line (masked); returns the exit code and the
/// last lines for error messages.
async fn stream(
    mut cmd: Command,
    cli: &Path,
    verb: &str,
    secrets: &[String],
    mut on_line: impl FnMut(&str),
) -> Result<(i32, String), BuildError> {
    let spawn_err = |e: std::io::Error| BuildError::Spawn {
        cli: cli.display().to_string(),
        verb: verb.to_string(),
        detail: e.to_string(),
    };
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_err)?;
    let stdout = child.stdout.take().map(|s| BufReader::new(s).lines());
    let stderr = child.stderr.take().map(|s| BufReader::new(s).lines());
    let mut tail: Vec<String> = Vec::new();
    let masker = benchform_manifest::mask::Masker::new(secrets.iter().cloned());
    let mut push_line = |line: String| {
        let masked = masker.mask(&line);
        on_line(&masked);
        tail.push(masked);
        if tail.len() > 30 {
            tail.remove(0);
        }
    };
    if let (Some(mut out), Some(mut err)) = (stdout, stderr) {
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                line = out.next_line(), if !out_done => match line { Ok(Some(l)) => push_line(l), _ => out_done = true },
                line = err.next_line(), if !err_done => match line { Ok(Some(l)) => push_line(l), _ => err_done = true },
            }
        }
    }
    let status = child.wait().await.map_err(spawn_err)?;
    Ok((status.code().unwrap_or(-1), tail.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_list_goes_in_as_a_secret_never_a_build_arg() {
        let args = BTreeMap::from([("FRAPPE_BRANCH".to_string(), "v15.88.1".to_string())]);
        let labels = BTreeMap::new();
        let spec = BuildSpec {
            context: Path::new("/ctx"),
            containerfile: Path::new("/ctx/images/layered/Containerfile"),
            reference: "localhost:5000/erp:abc",
            build_args: &args,
            labels: &labels,
            apps_json: Path::new("/tmp/apps.json"),
            network: Some("host"),
            no_cache: false,
        };
        let argv = spec.args();
        assert!(argv.windows(2).any(|w| w == ["--secret", "id=apps_json,src=/tmp/apps.json"]));
        assert!(!argv.iter().any(|a| a.contains("APPS_JSON")));
        assert!(argv.windows(2).any(|w| w == ["--network", "host"]));
        assert_eq!(argv.last().map(String::as_str), Some("/ctx"));
    }

    #[test]
    fn masking_replaces_every_secret() {
        let masker = benchform_manifest::mask::Masker::new(["tok1".to_string()]);
        assert_eq!(masker.mask("clone https://tok1@h/a tok1"), "clone https://***@h/a ***");
    }
}

/// What verification reads from a built image, each as text.
#[derive(Debug, Clone, Default)]
pub struct ImageContents {
    /// `sites/apps.json` (bench's app-state file).
    pub apps_json: String,
    /// `ls -1` of the `apps/` folder.
    pub apps_dir: String,
    /// `docker history --no-trunc` (every layer's command, build arguments included).
    pub history: String,
    /// `docker image inspect` (labels, environment, config).
    pub metadata: String,
    /// Every file under `logs/`, concatenated.
    pub logs: String,
}

/// The bench folder inside frappe_docker images.
const BENCH: &str = "/home/frappe/frappe-bench";

/// Read what verification needs from `image`, with throw-away containers (argv only, no shell):
/// the image's own files, not a volume's stale copy (frappe-contract §2).
pub async fn image_contents(cli: &Cli, image: &str) -> Result<ImageContents, BuildError> {
    let run = |args: Vec<String>| async move {
        let mut cmd = cli.command();
        cmd.args(&args).stdin(Stdio::null());
        let out = cmd.output().await.map_err(|e| BuildError::Spawn {
            cli: cli.program.display().to_string(),
            verb: args.first().cloned().unwrap_or_default(),
            detail: e.to_string(),
        })?;
        Ok::<(bool, String), BuildError>((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    let in_image = |entrypoint: &str, rest: &[&str]| {
        let mut args: Vec<String> = ["run", "--rm", "--network", "none", "--entrypoint", entrypoint, image]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    let (_, apps_json) = run(in_image("cat", &[&format!("{BENCH}/sites/apps.json")])).await?;
    let (_, apps_dir) = run(in_image("ls", &["-1", &format!("{BENCH}/apps")])).await?;
    let (_, logs) = run(in_image("find", &[&format!("{BENCH}/logs"), "-type", "f", "-exec", "cat", "{}", "+"])).await?;
    let (_, history) =
        run(vec!["history".into(), "--no-trunc".into(), "--format".into(), "{{.CreatedBy}}".into(), image.into()])
            .await?;
    let (_, metadata) = run(vec!["image".into(), "inspect".into(), image.into()]).await?;
    Ok(ImageContents { apps_json, apps_dir, history, metadata, logs })
}
