//! benchform deploying to another machine, as a CI runner does: the remote host of `scripts/world
//! up --remote` (its own dockerd in its own network namespace) reached over SSH and over TCP with
//! mutual TLS, by `DOCKER_HOST` or by a Docker context. The demo's release runs there end to end,
//! the main engine is never touched, each way of failing to connect is a clear error that changes
//! nothing, and the apply lock holds between a client over SSH and one over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Run, benchform_in, root};
use crate::world::{Remote, World};

type Env = Vec<(String, String)>;

fn kv(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Over SSH as the deploy user, with the world's key and pinned host key.
fn ssh(r: &Remote) -> Env {
    kv(&[
        ("DOCKER_HOST", r.var("BENCHFORM_WORLD_REMOTE_SSH")),
        ("BENCHFORM_SSH_CONFIG", r.var("BENCHFORM_WORLD_REMOTE_SSH_CONFIG")),
    ])
}

/// Over TCP with TLS, the client certificates in `certs` (a folder of the world's `tls/`).
fn tls(r: &Remote, host: &str, certs: &str) -> Env {
    let dir = Path::new(r.var("BENCHFORM_WORLD_REMOTE_CERTS")).join(certs);
    kv(&[("DOCKER_HOST", host), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", &dir.display().to_string())])
}

/// A run of `scripts/demo` against an endpoint, in a folder of its own; its compose project on
/// the remote engine is taken down when it goes.
struct Demo {
    dir: tempfile::TempDir,
    project: String,
    secrets: Env,
    output: String,
}

impl Demo {
    fn run(endpoint: &Env, build_on: &str) -> Demo {
        let world = World::get();
        let dir = tempfile::tempdir().unwrap();
        let secrets = kv(&[
            ("DB_PASSWORD", "remote-root-pw"),
            ("ADMIN_PASSWORD", "remote-admin-pw"),
            ("ACME_APP_TOKEN", world.var("BENCHFORM_WORLD_GIT_TOKEN")),
        ]);
        let mut cmd = Command::new(root().join("scripts/demo"));
        cmd.env("BENCHFORM_DEMO_DIR", dir.path())
            .env("BENCHFORM_DEMO_BUILD_ON", build_on)
            .env("NO_COLOR", "1")
            .env_remove("BENCHFORM_LOG");
        for var in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "SSH_AUTH_SOCK"] {
            cmd.env_remove(var);
        }
        cmd.envs(endpoint.iter().chain(&secrets).map(|(k, v)| (k.as_str(), v.as_str())));
        let out = cmd.output().unwrap();
        let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let project = std::fs::read_to_string(dir.path().join("project-name")).unwrap_or_default().trim().to_string();
        let demo = Demo { dir, project, secrets, output };
        assert!(out.status.success(), "the demo failed against {endpoint:?}:\n{}", demo.output);
        demo
    }

    fn project_dir(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    /// benchform in the demo's project, through `endpoint` only (no SSH agent either).
    fn benchform(&self, args: &[&str], endpoint: &Env) -> Run {
        let mut env: Vec<(&str, &str)> = vec![("SSH_AUTH_SOCK", "")];
        env.extend(endpoint.iter().chain(&self.secrets).map(|(k, v)| (k.as_str(), v.as_str())));
        benchform_in(&self.project_dir(), args, &env)
    }

    /// The project's containers on an engine (`docker ps -a` by compose label), as `name id`.
    fn containers(&self, mut docker: Command) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let out = docker.args(["ps", "-a", "--filter", &label, "--format", "{{.Names}} {{.ID}}"]).output().unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    /// What must hold after the demo on the remote host: all of it there, nothing on the main
    /// engine but the image when it was built here, the backups on this machine.
    fn assert_ran_remotely(&self, engine_line: &str, built_here: bool) {
        let (world, remote) = (World::get(), Remote::get());
        assert!(self.output.contains(engine_line), "status does not say `{engine_line}`:\n{}", self.output);
        assert_eq!(
            self.output.matches("No changes. The deployment matches benchform.yaml.").count(),
            2,
            "{}",
            self.output
        );
        let backend = format!("label=com.docker.compose.service={}", "backend");
        let running = remote
            .docker()
            .args(["ps", "-q", "--filter", &backend, "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.project))
            .output()
            .unwrap();
        assert!(!running.stdout.is_empty(), "no backend of {} runs on the remote host", self.project);
        let on_main = self.containers(Command::new(world.docker_cli()));
        assert!(on_main.is_empty(), "the main engine has containers of {}: {on_main:?}", self.project);
        let repository = format!("{}/{}/erpnext", world.registry(), self.project);
        let images = |mut docker: Command| {
            let out = docker.args(["images", "--format", "{{.Tag}}", &repository]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
        };
        let (here, there) = (images(Command::new(world.docker_cli())), images(remote.docker()));
        assert_eq!(there.len(), 2, "the remote engine should hold both releases' images: {there:?}");
        if built_here {
            // Built and pushed here; the remote engine pulled what it runs.
            assert_eq!(here.len(), 2, "image.build_on: local built elsewhere: {here:?}");
            let built = self.output.matches("done build in").count();
            assert_eq!(built, 2, "{}", self.output);
        } else {
            assert!(here.is_empty(), "the image was built on the main engine: {here:?}");
        }
        // The release's backup was copied off the remote volume onto this machine.
        let site_backups = self.project_dir().join("backups").join(&self.project).join("erp.localhost");
        let taken: Vec<_> = std::fs::read_dir(&site_backups).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(!taken.is_empty(), "no backup in {}", site_backups.display());
    }

    /// Each endpoint in `bad` fails with its message and fix, and changes nothing on the host.
    fn assert_refused(&self, bad: &[(&str, Env, &str)]) {
        let before = self.containers(Remote::get().docker());
        for (what, endpoint, message) in bad {
            let run = self.benchform(&["apply", "--auto-approve"], endpoint);
            assert_eq!(run.code, 1, "{what}: {}", run.all());
            assert!(run.stderr.contains(message), "{what}: expected `{message}` in:\n{}", run.stderr);
            assert!(run.stderr.contains("fix:"), "{what}: no fix in:\n{}", run.stderr);
            for secret in self.secrets.iter().map(|(_, v)| v) {
                assert!(!run.all().contains(secret.as_str()), "{what}: a secret leaked");
            }
        }
        assert_eq!(self.containers(Remote::get().docker()), before, "a refused connection changed the host");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.project.is_empty() {
            return;
        }
        let compose = root().join("tests/fixtures/compose/compose.yaml");
        let _ = Remote::get()
            .docker()
            .args(["compose", "-p", &self.project, "-f", &compose.display().to_string(), "down", "-v"])
            .output();
    }
}

/// A Docker config folder whose current context, made by the real `docker context create`, is
/// `docker_args` (`host=…,ca=…`).
fn context_config(docker_args: &str) -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    for args in [vec!["context", "create", "prod", "--docker", docker_args], vec!["context", "use", "prod"]] {
        let out =
            Command::new(World::get().docker_cli()).args(&args).env("DOCKER_CONFIG", config.path()).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    config
}

#[test]
fn the_demo_release_runs_on_a_remote_host_over_ssh_and_every_ssh_failure_is_a_clear_error() {
    let r = Remote::get();
    let keys = Path::new(r.var("BENCHFORM_WORLD_REMOTE_SSH_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    // The whole demo through a Docker context naming the host, no DOCKER_HOST; with connection
    // sharing in the ssh configuration, which must not carry benchform's forward past its run.
    let config = context_config(&format!("host={}", r.var("BENCHFORM_WORLD_REMOTE_SSH")));
    let shared = scratch.path().join("shared_config");
    let control = scratch.path().join("control");
    std::fs::create_dir(&control).unwrap();
    std::fs::write(
        &shared,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  ControlMaster auto\n  \
             ControlPath {}/%C\n  ControlPersist 600\n",
            keys.join("id_ed25519").display(),
            keys.join("known_hosts").display(),
            control.display()
        ),
    )
    .unwrap();
    let through_context = kv(&[
        ("DOCKER_CONFIG", &config.path().display().to_string()),
        ("BENCHFORM_SSH_CONFIG", &shared.display().to_string()),
    ]);
    let demo = Demo::run(&through_context, "");
    demo.assert_ran_remotely(
        &format!(
            "Engine: {} (context `prod` (currentContext in the Docker config file))",
            r.var("BENCHFORM_WORLD_REMOTE_SSH")
        ),
        false,
    );
    let masters: Vec<_> = std::fs::read_dir(&control).unwrap().flatten().map(|e| e.path()).collect();
    assert!(masters.is_empty(), "an ssh master outlives the runs: {masters:?}");

    // DOCKER_HOST reaches the same deployment.
    let status = demo.benchform(&["status"], &ssh(r));
    assert_eq!(status.code, 0, "{}", status.all());
    assert!(
        status.stdout.contains(&format!("Engine: {} (DOCKER_HOST)", r.var("BENCHFORM_WORLD_REMOTE_SSH"))),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("erp.localhost"), "{}", status.stdout);

    // Every way SSH can fail, for real.
    let ssh_config = |name: &str, key: &str, known_hosts: &Path| {
        let path = scratch.path().join(name);
        let text = format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n",
            keys.join(key).display(),
            known_hosts.display()
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let changed = scratch.path().join("changed_known_hosts");
    let other_key = scratch.path().join("other_host_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", &other_key.display().to_string()])
        .status()
        .unwrap();
    assert!(made.success());
    let other_pub = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(&changed, format!("{} {}\n", r.var("BENCHFORM_WORLD_REMOTE_IP"), other_pub.join(" "))).unwrap();
    let host = r.var("BENCHFORM_WORLD_REMOTE_SSH");
    let with =
        |docker_host: &str, config: String| kv(&[("DOCKER_HOST", docker_host), ("BENCHFORM_SSH_CONFIG", &config)]);
    let good_config = r.var("BENCHFORM_WORLD_REMOTE_SSH_CONFIG").to_string();
    let no_docker =
        format!("ssh://{}@{}", r.var("BENCHFORM_WORLD_REMOTE_NODOCKER_USER"), r.var("BENCHFORM_WORLD_REMOTE_IP"));
    demo.assert_refused(&[
        (
            "a key the host does not know",
            with(host, ssh_config("wrong", "wrong_ed25519", &keys.join("known_hosts"))),
            "refused every key offered for user `benchform-deploy`",
        ),
        (
            "a changed host key",
            with(host, ssh_config("changed", "id_ed25519", &changed)),
            "does not match the one in known_hosts",
        ),
        (
            "an unknown host key",
            with(host, ssh_config("unknown", "id_ed25519", Path::new("/dev/null"))),
            "is not known (not in known_hosts)",
        ),
        ("no sshd on the port", with(&format!("{host}:2222"), good_config.clone()), "no SSH server answers at"),
        (
            "a user outside the docker group",
            with(&no_docker, good_config),
            "cannot open the engine's socket /var/run/docker.sock",
        ),
    ]);
    let plan = demo.benchform(&["plan", "--detailed-exitcode"], &ssh(r));
    assert_eq!(plan.code, 0, "{}", plan.all());
}

#[test]
fn the_demo_release_runs_on_a_remote_host_over_tls_built_here_and_the_apply_lock_holds_across_both_transports() {
    let r = Remote::get();
    let endpoint = tls(r, r.var("BENCHFORM_WORLD_REMOTE_TLS"), "client");
    // Built on this machine's engine this time (image.build_on: local), pulled by the remote one.
    let demo = Demo::run(&endpoint, "local");
    demo.assert_ran_remotely(&format!("Engine: {} (DOCKER_HOST)", r.var("BENCHFORM_WORLD_REMOTE_TLS")), true);
    let manifest = std::fs::read_to_string(demo.project_dir().join("benchform.yaml")).unwrap();
    assert!(manifest.contains("\n  build_on: local\n"), "{manifest}");

    // A context made with the certificates, as `docker context create` stores them.
    let certs = Path::new(r.var("BENCHFORM_WORLD_REMOTE_CERTS")).join("client");
    let config = context_config(&format!(
        "host={},ca={},cert={},key={}",
        r.var("BENCHFORM_WORLD_REMOTE_TLS"),
        certs.join("ca.pem").display(),
        certs.join("cert.pem").display(),
        certs.join("key.pem").display()
    ));
    let plan = demo
        .benchform(&["plan", "--detailed-exitcode"], &kv(&[("DOCKER_CONFIG", &config.path().display().to_string())]));
    assert_eq!(plan.code, 0, "{}", plan.all());

    let alt = format!("tcp://{}:{}", r.var("BENCHFORM_WORLD_REMOTE_ALT_IP"), r.var("BENCHFORM_WORLD_REMOTE_TLS_PORT"));
    demo.assert_refused(&[
        (
            "a certificate for another name",
            tls(r, &alt, "client"),
            "the engine's TLS certificate is not for the name `",
        ),
        (
            "an expired client certificate",
            tls(r, r.var("BENCHFORM_WORLD_REMOTE_TLS"), "expired"),
            "the engine refused benchform's client certificate",
        ),
        (
            "a client certificate from another CA",
            tls(r, r.var("BENCHFORM_WORLD_REMOTE_TLS"), "other-ca"),
            "the engine refused benchform's client certificate",
        ),
        (
            "no TLS at all",
            kv(&[("DOCKER_HOST", r.var("BENCHFORM_WORLD_REMOTE_TLS"))]),
            "speaks TLS, and no TLS was asked for",
        ),
    ]);

    // Two clients, one over SSH and one over TLS, apply to the same engine at once: while the
    // first holds the lock, the second is refused; the first finishes.
    let manifest = demo.project_dir().join("benchform.yaml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("  - name: third.localhost\n    apps: [erpnext]\n");
    std::fs::write(&manifest, text).unwrap();
    /// Killed if the test fails before it ends.
    struct Child(Option<std::process::Child>);
    impl Drop for Child {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut first = Child(Some({
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_benchform"));
        cmd.args(["apply", "--auto-approve"])
            .current_dir(demo.project_dir())
            .env("NO_COLOR", "1")
            .env("SSH_AUTH_SOCK", "");
        cmd.envs(ssh(r).iter().chain(&demo.secrets).map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }));
    let lock = format!("benchform-lock-{}", demo.project);
    let started = Instant::now();
    while !r.docker().args(["volume", "inspect", &lock]).output().unwrap().status.success() {
        assert!(started.elapsed() < Duration::from_secs(120), "the first apply never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = demo.benchform(&["apply", "--auto-approve", "--lock-timeout", "0"], &endpoint);
    let first = first.0.take().unwrap().wait_with_output().unwrap();
    let first_all = format!("{}{}", String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(first.status.success(), "the first apply (over SSH) failed:\n{first_all}");
    assert_eq!(second.code, 1, "the second apply (over TLS) was not refused:\n{}", second.all());
    assert!(second.stderr.contains("is locked by another apply"), "{}", second.stderr);
    let plan = demo.benchform(&["plan", "--detailed-exitcode"], &endpoint);
    assert_eq!(plan.code, 0, "{}", plan.all());
}

/// The engine's refusal of a client certificate races hyper's first request under TLS 1.3, so
/// connect asks again with a probe that reads the alert. The probe itself, on each certificate:
/// refused ones name the alert, the good one gets its answer.
#[test]
fn the_tls_probe_reads_why_the_engine_refused_a_client_certificate() {
    let r = Remote::get();
    let certs = Path::new(r.var("BENCHFORM_WORLD_REMOTE_CERTS"));
    let host = r.var("BENCHFORM_WORLD_REMOTE_TLS");
    use benchform_docker::tlsprobe::{Probe, probe};
    for refused in ["expired", "other-ca"] {
        let said = probe(host, &certs.join(refused));
        assert!(matches!(&said, Probe::Refused(why) if why.contains("alert")), "{refused}: {said:?}");
    }
    assert_eq!(probe(host, &certs.join("client")), Probe::Answered);
    assert_eq!(probe(host, &certs.join("missing")), Probe::Inconclusive);
}
