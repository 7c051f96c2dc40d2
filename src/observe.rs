//! The imperative shell around the core: read the build inputs from disk, and observe the world
//! (engine, registry, compose, sites) into the core's `Observed` value.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use benchform_bench::{Bench, Refresh, SitesRead};
use benchform_core::status::{Desired, Observed, ObservedContainer, TagObservation};
use benchform_core::tag::{self, ImageInputs};
use benchform_docker::compose::{self, Compose};
use benchform_docker::registry::RegistryError;
use benchform_docker::{Engine, TagState};
use benchform_manifest::{LockFile, Manifest};

use crate::shell::Shell;

/// Image label naming the project an image was built for.
pub const LABEL_PROJECT: &str = "org.benchform.project";

/// A deployment ready to observe: valid manifest, parsed lock, paths, desired state.
#[derive(Debug)]
pub struct Prepared {
    pub loaded: crate::load::Loaded,
    pub manifest: Manifest,
    pub lock: LockFile,
    pub lock_bytes: Vec<u8>,
    pub paths: Paths,
    /// What the image tag is computed from, build arguments included (computed once).
    pub image: ImageInputs,
    /// The images the build starts from (and the local aliases `image.base_tag` needs).
    pub bases: Vec<benchform_core::containerfile::Base>,
    /// The compose env file, read once: where secrets are looked up after the environment.
    pub env_file: crate::apply::EnvFile,
    pub desired: Desired,
}

/// Load the manifest and lock, check they agree (when `strict`), compute the desired state. On
/// failure, what to print has been printed; the status to exit with is returned.
pub fn prepare(shell: &Shell, file: Option<&Path>, strict: bool) -> Result<Prepared, crate::Status> {
    use crate::render;
    use benchform_manifest::lock::LOCK_FILE;
    let loaded = crate::load::load(file).map_err(|d| render::fail(shell, &d))?;
    let errors: Vec<_> = loaded.validation.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    let Some(manifest) = loaded.validation.manifest.clone().filter(|_| errors.is_empty()) else {
        return Err(render::fail(shell, &errors));
    };
    let lock_bytes = std::fs::read(loaded.dir.join(LOCK_FILE)).map_err(|_| {
        failed(
            shell,
            &ObserveError::new("lock", format!("no {LOCK_FILE} next to {}", loaded.display), "run `benchform lock`"),
        )
    })?;
    let lock = benchform_manifest::lock::parse_lock(LOCK_FILE, &lock_bytes).map_err(|d| render::fail(shell, &d))?;
    if strict {
        let mismatches = benchform_manifest::lock::check_agreement(&manifest, &lock);
        if !mismatches.is_empty() {
            let detail = mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            return Err(failed(
                shell,
                &ObserveError::new("lock", detail, "run `benchform lock` and commit benchform.lock"),
            ));
        }
    }
    let paths = Paths::new(&manifest, &loaded.dir);
    let (image, bases) = image_inputs(&manifest, &lock, &paths).map_err(|e| failed(shell, &e))?;
    let desired = benchform_core::status::desired(&manifest, &lock, &image.tag());
    let env_file = crate::apply::EnvFile::read(&paths);
    Ok(Prepared { loaded, manifest, lock, lock_bytes, paths, image, bases, env_file, desired })
}

impl Prepared {
    /// Open a session for this deployment and observe the world through it.
    pub async fn observe(&self, refresh: Refresh) -> Result<(Session, Observed), ObserveError> {
        let session = Session::open(&self.manifest, &self.paths).await?;
        let observed = observe(&session, self, refresh).await?;
        Ok((session, observed))
    }
}

/// Print why observation failed; the command fails.
pub fn failed(shell: &Shell, e: &ObserveError) -> crate::Status {
    shell.error(&format!("cannot observe the {}: {}", e.what, e.detail), &e.fix)
}

/// Something that could not be observed: what, the cause, and how to fix it.
#[derive(Debug)]
pub struct ObserveError {
    pub what: &'static str,
    pub detail: String,
    pub fix: String,
}

impl ObserveError {
    pub(crate) fn new(what: &'static str, detail: impl ToString, fix: impl ToString) -> ObserveError {
        ObserveError { what, detail: detail.to_string(), fix: fix.to_string() }
    }
}

/// The folders the manifest's relative paths resolve to.
#[derive(Debug, Clone)]
pub struct Paths {
    pub context: PathBuf,
    pub containerfile: PathBuf,
    pub compose_dir: PathBuf,
    pub compose_files: Vec<PathBuf>,
    pub env_file: Option<PathBuf>,
    /// `<manifest folder>/<backups.dir>/<project>`: backups copied off the sites (one folder per
    /// site), and the host's copy of the history.
    pub backups: PathBuf,
}

impl Paths {
    pub fn new(manifest: &Manifest, dir: &Path) -> Paths {
        // Absolute: compose v2 resolves `-f` paths against `--project-directory`, so a relative
        // folder would be taken twice.
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let context = dir.join(&manifest.image.context);
        let compose_dir = dir.join(manifest.deploy.compose.dir.as_deref().unwrap_or(&manifest.image.context));
        Paths {
            containerfile: context.join(&manifest.image.containerfile),
            compose_files: manifest.deploy.compose.files.iter().map(|f| compose_dir.join(f)).collect(),
            env_file: manifest.deploy.compose.env_file.as_ref().map(|e| compose_dir.join(e)),
            context,
            compose_dir,
            backups: dir.join(&manifest.backups.dir).join(&manifest.project),
        }
    }
}

/// frappe and the apps in manifest order with their locked commits; `None` if any is unlocked.
fn locked_sources(manifest: &Manifest, lock: &LockFile) -> Option<Vec<(String, String, String)>> {
    manifest
        .sources()
        .iter()
        .map(|s| Some((s.name.to_string(), s.repo.to_string(), lock.entry(s.name)?.commit.clone())))
        .collect()
}

/// Every build argument benchform passes: the manifest's, plus the three it owns.
fn build_args(manifest: &Manifest, sources: &[(String, String, String)]) -> BTreeMap<String, String> {
    let mut args = manifest.image.build_args.clone();
    args.insert("FRAPPE_PATH".to_string(), manifest.frappe.repo.clone());
    args.insert("FRAPPE_BRANCH".to_string(), manifest.frappe.git_ref.clone());
    args.insert("CACHE_BUST".to_string(), tag::cache_bust(sources));
    args
}

/// Everything the image tag is computed from, read from disk, and the images the build starts from.
pub fn image_inputs(
    manifest: &Manifest,
    lock: &LockFile,
    paths: &Paths,
) -> Result<(ImageInputs, Vec<benchform_core::containerfile::Base>), ObserveError> {
    let sources = locked_sources(manifest, lock)
        .ok_or_else(|| ObserveError::new("lock", "benchform.lock does not pin every source", "run `benchform lock`"))?;
    let containerfile = std::fs::read(&paths.containerfile).map_err(|e| {
        ObserveError::new(
            "build context",
            format!("{}: {e}", paths.containerfile.display()),
            "point image.context and image.containerfile at a frappe_docker checkout",
        )
    })?;
    let text = String::from_utf8_lossy(&containerfile);
    let resolved = benchform_core::containerfile::resolve(
        &text,
        &build_args(manifest, &sources),
        manifest.image.base_tag.as_deref(),
    )
    .map_err(|e| {
        ObserveError::new(
            "build context",
            format!("{}, {e}", paths.containerfile.display()),
            "fix the Containerfile, or image.base_tag (docs/manifest.md)",
        )
    })?;
    let reads = &resolved.reads;
    let context_sha256 = benchform_docker::context::context_digest(&paths.context, &reads.context)
        .map_err(|e| ObserveError::new("build context", e, "check image.context"))?;
    let inputs = ImageInputs {
        build_args: resolved.build_args.clone(),
        sources,
        containerfile_sha256: tag::sha256_hex(&containerfile),
        build_network: manifest.image.build_network.clone(),
        base_images: resolved.bases.iter().map(|b| b.source.clone()).collect(),
        remote_sources: reads.remote.clone(),
        context_sha256,
    };
    Ok((inputs, resolved.bases))
}

/// The adapters one command talks through, each connected once: the engine and the compose
/// project (its flavour detected once).
#[derive(Debug, Clone)]
pub struct Session {
    pub engine: Engine,
    /// The engine that builds, verifies and pushes the image: `engine`, or with `image.build_on:
    /// local` this machine's own.
    pub build_engine: Engine,
    pub compose: Compose,
    /// With `deploy.target: swarm`, the manager `engine` is.
    pub swarm: Option<crate::swarm::Manager>,
    /// What `compose version --short` says (`2.40.3`), asked once: while the rest of the
    /// observation runs when the flavour is known without asking.
    compose_version: std::sync::Arc<tokio::sync::OnceCell<Option<String>>>,
}

impl Session {
    /// Connect to the engine and detect compose, or say how to fix whichever is missing.
    pub async fn open(manifest: &Manifest, paths: &Paths) -> Result<Session, ObserveError> {
        // The engine first: compose is asked its version through the same endpoint.
        let engine = engine().await?;
        let (compose, compose_version) = compose(manifest, paths, engine.client_env()).await?;
        let local = benchform_docker::endpoint::DEFAULT_HOST;
        let build_engine = match manifest.image.build_on {
            // Deploying to this machine's engine already: the same connection builds.
            benchform_manifest::model::BuildOn::Engine => engine.clone(),
            benchform_manifest::model::BuildOn::Local if engine.host() == local => engine.clone(),
            benchform_manifest::model::BuildOn::Local => Engine::connect_to(local).await.map_err(|e| {
                ObserveError::new(
                    "engine",
                    format!("image.build_on: local, and this machine's engine does not answer: {e}"),
                    "start Docker on this machine, or build on the deploy engine (`image.build_on: engine`)",
                )
            })?,
        };
        let swarm = match manifest.deploy.target {
            benchform_manifest::model::DeployTarget::Compose => None,
            benchform_manifest::model::DeployTarget::Swarm => Some(crate::swarm::manager(&engine).await?),
        };
        Ok(Session { engine, build_engine, compose, swarm, compose_version })
    }

    /// What `compose version --short` says.
    pub async fn compose_version(&self) -> Option<String> {
        let flavour = self.compose.flavour;
        let cli = self.compose.docker_cli.clone();
        let env = self.compose.engine_env.clone();
        self.compose_version.get_or_init(|| compose::version_of(flavour, &cli, &env)).await.clone()
    }
}

/// Connect to the engine or say how to fix it.
pub async fn engine() -> Result<Engine, ObserveError> {
    Engine::connect().await.map_err(|e| match e {
        benchform_docker::EngineError::Endpoint { detail, fix } => ObserveError::new("engine", detail, fix),
        e @ benchform_docker::EngineError::TooOld { .. } => {
            ObserveError::new("engine", e, "upgrade Docker on that host to 20.10 or newer")
        }
        e => {
            ObserveError::new("engine", e, "start Docker, or point DOCKER_HOST at a running engine (unix:// or tcp://)")
        }
    })
}

/// The compose project the manifest describes, and the version of compose that drives it (being
/// asked in the background when the flavour is known without asking).
pub async fn compose(
    manifest: &Manifest,
    paths: &Paths,
    engine_env: Vec<(String, String)>,
) -> Result<(Compose, std::sync::Arc<tokio::sync::OnceCell<Option<String>>>), ObserveError> {
    let cli = benchform_docker::build::docker_cli();
    let version = std::sync::Arc::new(tokio::sync::OnceCell::new());
    let flavour = match compose::known_flavour() {
        Some(flavour) => {
            let (asked, cli, env) = (version.clone(), cli.clone(), engine_env.clone());
            tokio::spawn(async move {
                asked.get_or_init(|| compose::version_of(flavour, &cli, &env)).await;
            });
            flavour
        }
        None => {
            let (flavour, found) = compose::detect(&cli, &engine_env).await.map_err(|e| {
                ObserveError::new("compose", e, "install docker-compose (v1) or the compose plugin (v2)")
            })?;
            let _ = version.set(found);
            flavour
        }
    };
    let compose = Compose {
        flavour,
        docker_cli: cli,
        project: manifest.project.clone(),
        project_dir: paths.compose_dir.clone(),
        files: paths.compose_files.clone(),
        env_file: paths.env_file.clone(),
        engine_env,
    };
    Ok((compose, version))
}

/// The variables compose interpolates to run the desired image.
pub fn compose_env(desired: &Desired, flavour: compose::Flavour) -> Vec<(String, String)> {
    compose_env_for(&desired.repository, &desired.tag, flavour)
}

/// The same for any image (a redeploy of the previous one).
pub fn compose_env_for(repository: &str, tag: &str, flavour: compose::Flavour) -> Vec<(String, String)> {
    vec![
        ("CUSTOM_IMAGE".to_string(), repository.to_string()),
        ("CUSTOM_TAG".to_string(), tag.to_string()),
        // Pull only what the engine lacks, so a local build runs too (frappe_docker #1739).
        ("PULL_POLICY".to_string(), compose::pull_if_missing(flavour).to_string()),
    ]
}

/// The compose flavour a version belongs to: 1.x is v1 (Python); 2.x and later (5.x too) hash
/// configurations the Go way, v2.
fn flavour_of_version(version: &str) -> String {
    if version.trim_start_matches('v').starts_with("1.") { "v1" } else { "v2" }.to_string()
}

/// Observe everything `status` shows.
pub async fn observe(session: &Session, p: &Prepared, refresh: Refresh) -> Result<Observed, ObserveError> {
    let (manifest, desired) = (&p.manifest, &p.desired);
    let Session { engine, compose, .. } = session;
    let reference = desired.reference();
    let asked = if manifest.image.push { Some(engine.registry_tag(&reference).await) } else { None };
    let registry = match asked {
        None => TagObservation::Unused,
        Some(Ok(TagState::Present { digest })) => TagObservation::Present { digest },
        Some(Ok(TagState::Absent)) => TagObservation::Absent,
        Some(Err(e @ RegistryError::Unauthorized { .. })) => {
            let registry = benchform_docker::registry::registry_host(&reference);
            return Err(ObserveError::new(
                "registry",
                e,
                format!("log in with `docker login {registry}` (benchform reads the Docker config file)"),
            ));
        }
        Some(Err(e)) => {
            return Err(ObserveError::new(
                "registry",
                e,
                "check that the registry is up and image.repository names it",
            ));
        }
    };
    // A built image waits in the engine that builds it (this machine's, with build_on: local).
    let engine_image = session
        .build_engine
        .image(&reference)
        .await
        .map_err(|e| ObserveError::new("engine", e, "check the engine's health (`docker info`)"))?
        .map(|i| i.id);
    // The bases matter only when a build is coming.
    let missing_bases = if engine_image.is_none() && !matches!(registry, TagObservation::Present { .. }) {
        missing_bases(&session.build_engine, p).await
    } else {
        Vec::new()
    };

    let env = compose_env(desired, compose.flavour);
    let deployment = match &session.swarm {
        None => compose_deployment(session, manifest, &env, &reference).await?,
        Some(manager) => swarm_deployment(session, manager, manifest, &env, &reference).await?,
    };
    let Deployment { containers: observed_containers, rendered: services, has_volumes, other_projects, bench, swarm } =
        deployment;
    let bench_container = bench.as_ref().map(|(id, _)| id.clone());
    let rendered: BTreeMap<String, String> =
        services.iter().filter_map(|(name, s)| Some((name.clone(), s.image.clone()?))).collect();
    let sites_observed = bench.is_some();
    let read = match bench {
        Some((container, name)) => Bench { engine, container }.observe_sites(refresh).await.map_err(|e| {
            let logs = match session.swarm {
                None => format!("`docker logs {name}`"),
                Some(_) => format!("`docker service logs {name}` on the manager"),
            };
            ObserveError::new("sites", e, format!("check the {} container ({logs})", manifest.deploy.backend_service))
        })?,
        None => SitesRead::default(),
    };
    let compose_version = session.compose_version().await;
    Ok(Observed {
        // What the program says it is (a `docker-compose` on PATH can be a v2 binary).
        compose: compose_version.as_deref().map_or_else(|| compose.flavour.as_str().to_string(), flavour_of_version),
        compose_version,
        registry,
        engine_image,
        containers: observed_containers,
        deploy_services: rendered.iter().filter(|(_, img)| **img == reference).map(|(s, _)| s.clone()).collect(),
        services: services
            .into_iter()
            .map(|(name, s)| {
                (
                    name,
                    benchform_core::status::ServiceSpec {
                        restart: s.restart,
                        image: s.image,
                        depends_on: s.depends_on,
                    },
                )
            })
            .collect(),
        has_volumes,
        sites: read.sites,
        apps_source: read.apps_source,
        sites_observed,
        missing_bases,
        other_projects,
        backups: host_backups(&p.paths.backups, desired.sites.iter().map(|d| d.name.as_str())),
        bench_container,
        swarm,
    })
}

/// What runs of the deployment (compose's containers, or a swarm's services), as observed.
struct Deployment {
    containers: Vec<ObservedContainer>,
    /// Every service of the rendered configuration (benchform's own ops service too, on a swarm).
    rendered: BTreeMap<String, compose::RenderedService>,
    has_volumes: bool,
    other_projects: Vec<String>,
    /// Where `bench` runs, once it runs: the container's id and name.
    bench: Option<(String, String)>,
    swarm: Option<benchform_core::status::ObservedSwarm>,
}

fn engine_error(e: benchform_docker::EngineError) -> ObserveError {
    ObserveError::new("engine", e, "check the engine's health (`docker info`)")
}

/// The images' `org.benchform.project` labels, each image asked once.
async fn built_for(engine: &Engine, containers: &mut [ObservedContainer]) {
    let mut known: HashMap<String, Option<String>> = HashMap::new();
    for c in containers {
        if !known.contains_key(&c.image_id) {
            let labels = engine.image(&c.image_id).await.ok().flatten().map(|i| i.labels).unwrap_or_default();
            known.insert(c.image_id.clone(), labels.get(LABEL_PROJECT).cloned());
        }
        c.built_for = known.get(&c.image_id).cloned().flatten();
    }
}

async fn compose_deployment(
    session: &Session,
    manifest: &Manifest,
    env: &[(String, String)],
    reference: &str,
) -> Result<Deployment, ObserveError> {
    let Session { engine, compose, .. } = session;
    let compose_error =
        |e| ObserveError::new("compose", e, "fix the compose files the manifest names (deploy.compose)");
    // Two compose processes that do not depend on each other: at the same time.
    let (services, hashes) = tokio::join!(compose.rendered_services(env), compose.config_hashes(env));
    let services = services.map_err(compose_error)?;
    let hashes = hashes.map_err(compose_error)?;
    let containers = engine.project_containers(&manifest.project).await.map_err(engine_error)?;
    let mut observed: Vec<ObservedContainer> = containers
        .iter()
        .filter(|c| !c.oneoff)
        .map(|c| ObservedContainer {
            service: c.service.clone(),
            name: c.name.clone(),
            state: c.state.clone(),
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            desired_image: services.get(&c.service).and_then(|s| s.image.clone()).filter(|img| img == reference),
            built_for: None,
            config_hash: c.config_hash.clone(),
            desired_config_hash: hashes.get(&c.service).cloned(),
            exit_code: c.exit_code(),
            compose: c.compose_version.as_deref().map(flavour_of_version),
        })
        .collect();
    built_for(engine, &mut observed).await;
    let bench = benchform_docker::engine::running_service(&containers, &manifest.deploy.backend_service)
        .map(|b| (b.id.clone(), b.name.clone()));
    let has_volumes = engine.project_has_volumes(&manifest.project).await.map_err(engine_error)?;
    // Nothing of this project exists: is the deployment running under another name?
    let other_projects = match session.compose.files.first() {
        Some(file) if containers.is_empty() && !has_volumes => other_projects(engine, file, manifest).await?,
        _ => Vec::new(),
    };
    Ok(Deployment { containers: observed, rendered: services, has_volumes, other_projects, bench, swarm: None })
}

async fn swarm_deployment(
    session: &Session,
    manager: &crate::swarm::Manager,
    manifest: &Manifest,
    env: &[(String, String)],
    reference: &str,
) -> Result<Deployment, ObserveError> {
    let Session { engine, compose, .. } = session;
    let value = compose
        .rendered(env)
        .await
        .map_err(|e| ObserveError::new("compose", e, "fix the compose files the manifest names (deploy.compose)"))?;
    let mut services = compose::services_of(&value);
    let state = crate::swarm::StackState::read(engine, &manifest.project).await.map_err(engine_error)?;
    let stack = crate::swarm::stack(&value, manifest, manager, state.nodes.len())?;
    // A one-shot service runs on the swarm restarted on failure only, whatever compose's
    // `restart` said: exited 0 is its success.
    for job in &stack.jobs {
        if let Some(service) = services.get_mut(job) {
            service.restart = Some("on-failure".to_string());
        }
    }
    // benchform's ops service is deployed with the rest, on the desired image.
    services.insert(
        benchform_core::swarm::OPS_SERVICE.to_string(),
        compose::RenderedService {
            image: Some(reference.to_string()),
            restart: Some("always".to_string()),
            depends_on: Vec::new(),
        },
    );
    let mut observed = state.observed(&manifest.project, &stack);
    for c in &mut observed {
        c.desired_image = services.get(&c.service).and_then(|s| s.image.clone()).filter(|img| img == reference);
    }
    built_for(engine, &mut observed).await;
    // The stack, its volumes, or the compose project it was moved from (docs/swarm.md: the first
    // swarm apply after `compose down`): sites may exist that no ops task can read yet.
    let has_volumes = !state.services.is_empty()
        || engine
            .has_volumes_labelled(benchform_docker::swarm::NAMESPACE_LABEL, &manifest.project)
            .await
            .map_err(engine_error)?
        || engine.project_has_volumes(&manifest.project).await.map_err(engine_error)?;
    let ops = state.ops_container(manager).map(|id| {
        let name = format!("{}_{}", manifest.project, benchform_core::swarm::OPS_SERVICE);
        (id, name)
    });
    // Before its first stack runs, a deployment moved from compose is read through the compose
    // backend still running on the manager (docs/swarm.md, moving a compose deployment).
    let bench = match ops {
        Some(ops) => Some(ops),
        None => engine
            .running_container(&manifest.project, &manifest.deploy.backend_service)
            .await
            .map_err(engine_error)?
            .map(|c| (c.id, c.name)),
    };
    let swarm = benchform_core::status::ObservedSwarm {
        nodes: state
            .nodes
            .iter()
            .map(|n| benchform_core::status::SwarmNode {
                hostname: n.hostname.clone(),
                state: n.state.clone(),
                availability: n.availability.clone(),
                manager: n.manager,
            })
            .collect(),
        placement: state.placement(),
    };
    Ok(Deployment {
        containers: observed,
        rendered: services,
        has_volumes,
        other_projects: Vec::new(),
        bench,
        swarm: Some(swarm),
    })
}

/// The backups benchform keeps on the host for each of `sites` (`<backups>/<site>/<stamp>/`),
/// oldest first, each with what it says it is of. A folder without benchform's note (copied by
/// hand, or from before benchform wrote one) is no restore point.
pub fn host_backups<'s>(
    dir: &Path,
    sites: impl Iterator<Item = &'s str>,
) -> BTreeMap<String, Vec<benchform_core::status::HostBackup>> {
    use benchform_core::status::{BACKUP_META_FILE, BackupMeta, HostBackup};
    let mut out = BTreeMap::new();
    for site in sites {
        let Ok(entries) = std::fs::read_dir(dir.join(site)) else { continue };
        let mut found: Vec<HostBackup> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let meta: BackupMeta =
                    serde_json::from_slice(&std::fs::read(e.path().join(BACKUP_META_FILE)).ok()?).ok()?;
                (meta.site == site).then_some(HostBackup { name, taken_at: meta.taken_at, record: meta.record })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        if !found.is_empty() {
            out.insert(site.to_string(), found);
        }
    }
    out
}

/// Other projects started from the same compose file that are this deployment under another
/// name: those whose backend runs an image benchform did not build for a different project (a
/// hand-built, stock or foreign image, or one built for this project). Stacks benchform built for
/// other projects from one checkout (staging next to production, tests side by side) are not.
async fn other_projects(engine: &Engine, file: &Path, manifest: &Manifest) -> Result<Vec<String>, ObserveError> {
    let project = manifest.project.as_str();
    let engine_error = |e| ObserveError::new("engine", e, "check the engine's health (`docker info`)");
    let found = engine.projects_using(file, &manifest.deploy.backend_service, project).await.map_err(engine_error)?;
    let mut built_for: HashMap<String, Option<String>> = HashMap::new();
    let mut out: Vec<String> = Vec::new();
    for (other, image) in found {
        if !built_for.contains_key(&image) {
            let labels = engine.image(&image).await.map_err(engine_error)?.map(|i| i.labels).unwrap_or_default();
            built_for.insert(image.clone(), labels.get(LABEL_PROJECT).cloned());
        }
        let foreign = built_for.get(&image).cloned().flatten().is_some_and(|p| p != project);
        if !foreign && !out.contains(&other) {
            out.push(other);
        }
    }
    Ok(out)
}

/// The images the build starts from that the engine lacks and cannot pull: their registry has no
/// such tag, or cannot be asked (no network, no credentials) — the build would fail the same way.
async fn missing_bases(engine: &Engine, p: &Prepared) -> Vec<benchform_core::status::MissingBase> {
    let mut out = Vec::new();
    for base in &p.bases {
        if matches!(engine.image(&base.source).await, Ok(Some(_))) {
            continue;
        }
        let why = match engine.registry_tag(&base.source).await {
            Ok(TagState::Present { .. }) => continue,
            Ok(TagState::Absent) => "its registry has no such tag".to_string(),
            Err(e) => e.to_string(),
        };
        out.push(benchform_core::status::MissingBase {
            image: base.source.clone(),
            detail: crate::apply::missing_base(base, &p.manifest, why),
            fix: crate::apply::base_fix(base, &p.manifest),
        });
    }
    out
}
