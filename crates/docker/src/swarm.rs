//! The swarm adapter: the swarm the engine belongs to (its node, the nodes), a stack's services
//! and their tasks (from the manager, a constant number of requests for any stack), and `docker
//! stack deploy` of a stack file `benchform_core::swarm` rendered.
//!
//! Deploy goes through the Docker CLI rather than the Engine API: the CLI's stack conversion
//! creates the stack's networks, secrets and configs, labels everything with the namespace, and
//! updates only what changed (docs/decisions.md). Everything read goes through the API.

use std::collections::HashMap;
use std::process::Stdio;

use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use tokio::io::AsyncWriteExt;

use crate::build::Cli;
use crate::{Engine, EngineError};

/// The label swarm's stack deploy puts on a stack's services (and their containers).
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The engine's place in a swarm (`docker info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `inactive`, `pending`, `active`, `error`, `locked`.
    pub state: String,
    pub node_id: String,
    /// The engine is a manager: it can deploy stacks and list services, tasks and nodes.
    pub manager: bool,
}

/// A node of the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    /// `ready`, `down`, `unknown`, `disconnected`.
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub manager: bool,
}

/// One service of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    /// Its name in the stack (without the `<project>_` prefix).
    pub name: String,
    /// The image its tasks run, as the spec names it (without the `@sha256:` pin).
    pub image: String,
    /// Replicas asked for (`None`: global).
    pub replicas: Option<u64>,
    /// How many tasks swarm means to run now (a global service: one per node its constraints
    /// allow), as it reports.
    pub desired_tasks: Option<u64>,
    /// The service's labels (the stack file's `deploy.labels`).
    pub labels: HashMap<String, String>,
    /// Its tasks' environment (`KEY=VALUE`), as the spec says now.
    pub env: Vec<String>,
    /// A rolling update's state (`updating`, `completed`, `paused`, `rollback_started`,
    /// `rollback_completed` …), and what swarm said about it.
    pub update: Option<(String, String)>,
}

/// One task of a stack's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub service: String,
    pub node_id: String,
    /// `running`, `complete`, `failed`, `rejected`, `shutdown`, `preparing` …
    pub state: String,
    pub desired_state: String,
    pub image: String,
    pub container_id: Option<String>,
    pub exit_code: Option<i64>,
    /// Swarm's message, or the task's error (`No such image`, `task: non-zero exit (1)`).
    pub message: String,
    /// When swarm created it (RFC 3339): the newest task of a service is its latest attempt.
    pub created_at: String,
    /// Its container's labels, from the service's spec when the task was made: which
    /// configuration it runs.
    pub labels: HashMap<String, String>,
}

/// `repo:tag@sha256:…` (as swarm pins what it resolved) → `repo:tag`.
fn unpinned(image: &str) -> String {
    image.split('@').next().unwrap_or(image).to_string()
}

fn lower(value: impl std::fmt::Display) -> String {
    value.to_string().to_lowercase()
}

impl Engine {
    /// The engine's place in a swarm, `None` outside of one.
    pub async fn swarm_membership(&self) -> Result<Option<Membership>, EngineError> {
        let info = self.docker().info().await.map_err(|e| Self::request_error("read the engine's info", e))?;
        let Some(swarm) = info.swarm else { return Ok(None) };
        let state = swarm.local_node_state.map(lower).unwrap_or_default();
        if state.is_empty() || state == "inactive" {
            return Ok(None);
        }
        Ok(Some(Membership {
            state,
            node_id: swarm.node_id.unwrap_or_default(),
            manager: swarm.control_available.unwrap_or(false),
        }))
    }

    /// The swarm's nodes, by host name.
    pub async fn swarm_nodes(&self) -> Result<Vec<Node>, EngineError> {
        let list =
            self.docker().list_nodes(None).await.map_err(|e| Self::request_error("list the swarm's nodes", e))?;
        let mut out: Vec<Node> = list
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                let status = n.status.unwrap_or_default();
                Node {
                    id: n.id.unwrap_or_default(),
                    hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                    state: status.state.map(lower).unwrap_or_default(),
                    availability: spec.availability.map(lower).unwrap_or_default(),
                    manager: n.manager_status.is_some(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(out)
    }

    /// The services of stack `project`, by name.
    pub async fn stack_services(&self, project: &str) -> Result<Vec<Service>, EngineError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{NAMESPACE_LABEL}={project}")]);
        let options = ListServicesOptionsBuilder::new().filters(&filters).status(true).build();
        let list = self
            .docker()
            .list_services(Some(options))
            .await
            .map_err(|e| Self::request_error("list the stack's services", e))?;
        let prefix = format!("{project}_");
        let mut out: Vec<Service> = list
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let full = spec.name.unwrap_or_default();
                let container = spec.task_template.and_then(|t| t.container_spec).unwrap_or_default();
                let image = container.image.map(|i| unpinned(&i)).unwrap_or_default();
                let replicas = spec.mode.and_then(|m| m.replicated).map(|r| r.replicas.unwrap_or(1) as u64);
                let update =
                    s.update_status.map(|u| (u.state.map(lower).unwrap_or_default(), u.message.unwrap_or_default()));
                Service {
                    id: s.id.unwrap_or_default(),
                    name: full.strip_prefix(&prefix).unwrap_or(&full).to_string(),
                    image,
                    replicas,
                    desired_tasks: s.service_status.and_then(|st| st.desired_tasks),
                    labels: spec.labels.unwrap_or_default(),
                    env: container.env.unwrap_or_default(),
                    update,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every task of `services` (from [`Engine::stack_services`]): one request for the stack.
    pub async fn stack_tasks(&self, services: &[Service]) -> Result<Vec<Task>, EngineError> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let names: HashMap<&str, &str> = services.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect();
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("service".to_string(), services.iter().map(|s| s.id.clone()).collect());
        let options = ListTasksOptionsBuilder::new().filters(&filters).build();
        let list = self
            .docker()
            .list_tasks(Some(options))
            .await
            .map_err(|e| Self::request_error("list the stack's tasks", e))?;
        Ok(list
            .into_iter()
            .filter_map(|t| {
                let service = names.get(t.service_id.as_deref()?)?.to_string();
                let status = t.status.unwrap_or_default();
                let container = status.container_status.clone().unwrap_or_default();
                let spec = t.spec.and_then(|s| s.container_spec).unwrap_or_default();
                let image = spec.image.map(|i| unpinned(&i));
                let message = match status.err.filter(|e| !e.is_empty()) {
                    Some(err) => err,
                    None => status.message.unwrap_or_default(),
                };
                Some(Task {
                    id: t.id.unwrap_or_default(),
                    created_at: t.created_at.clone().unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default(),
                    service,
                    node_id: t.node_id.unwrap_or_default(),
                    state: status.state.map(lower).unwrap_or_default(),
                    desired_state: t.desired_state.map(lower).unwrap_or_default(),
                    image: image.unwrap_or_default(),
                    container_id: container.container_id.filter(|c| !c.is_empty()),
                    exit_code: container.exit_code,
                    message,
                })
            })
            .collect())
    }
}

/// Why a stack could not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot run the Docker CLI ({program}): {detail}")]
    Cli { program: String, detail: String },
    #[error("`docker stack deploy` of {project} failed (exit {code}): {stderr}")]
    Failed { project: String, code: i32, stderr: String },
}

/// `docker stack deploy --compose-file - <project>` of `file` (the stack file as JSON, read on
/// standard input: nothing of it lands on disk), images as the file names them (`--resolve-image
/// never`: each node pulls the tag from the registry itself, with the credentials of the Docker
/// config file passed along, `--with-registry-auth`), services no longer in the file removed
/// (`--prune`), through `cli` (pinned to the manager).
pub async fn deploy_stack(cli: &Cli, project: &str, file: &serde_json::Value) -> Result<String, StackError> {
    // Swarm refuses a service update whose spec version moved since the CLI read it ("update out
    // of sequence": the orchestrator touched the service in between). A stack deploy converges
    // to the same file whatever it did before, so it is asked again, a few times.
    const ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match deploy_stack_once(cli, project, file).await {
            Err(StackError::Failed { stderr, .. })
                if stderr.contains("update out of sequence") && attempt < ATTEMPTS =>
            {
                tracing::info!(project, attempt, "swarm: update out of sequence; deploying the stack again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            done => return done,
        }
    }
}

async fn deploy_stack_once(cli: &Cli, project: &str, file: &serde_json::Value) -> Result<String, StackError> {
    let cli_error =
        |e: std::io::Error| StackError::Cli { program: cli.program.display().to_string(), detail: e.to_string() };
    let mut cmd = cli.command();
    cmd.args(["stack", "deploy", "--prune", "--with-registry-auth", "--resolve-image", "never"])
        .args(["--compose-file", "-", project])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(cli_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(file.to_string().as_bytes()).await.map_err(cli_error)?;
    }
    let out = child.wait_with_output().await.map_err(cli_error)?;
    if !out.status.success() {
        return Err(StackError::Failed {
            project: project.to_string(),
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// A command run once on the swarm (a `replicated-job` service, Engine API 1.41): where no
/// container of this engine can run it, e.g. against a service on another node.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// The service's name (removed again when the job has ended).
    pub name: String,
    pub image: &'a str,
    pub argv: &'a [String],
    /// Overlay networks (full names) it joins, to reach the stack's services by name.
    pub networks: Vec<String>,
    pub labels: HashMap<String, String>,
}

impl Engine {
    /// Run `job` to its end (at most `limit`), then remove it: its exit code, or what swarm said
    /// when it never ran (no such image, no node to run it).
    pub async fn run_job(&self, job: &Job<'_>, limit: std::time::Duration) -> Result<Result<i64, String>, EngineError> {
        use bollard::models::{
            NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec,
            TaskSpecContainerSpec, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
        };
        let spec = ServiceSpec {
            name: Some(job.name.clone()),
            labels: Some(job.labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(job.image.to_string()),
                    command: Some(job.argv.to_vec()),
                    ..Default::default()
                }),
                networks: Some(
                    job.networks
                        .iter()
                        .map(|n| NetworkAttachmentConfig { target: Some(n.clone()), ..Default::default() })
                        .collect(),
                ),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: Some(1),
                    total_completions: Some(1),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A job of an earlier run that never got removed (benchform was killed while it ran)
        // would block the name: it goes first, when its labels say it is this job's kind.
        if let Ok(old) = self.docker().inspect_service(&job.name, None).await {
            let labels = old.spec.and_then(|s| s.labels).unwrap_or_default();
            if job.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                && let Some(id) = old.id
            {
                tracing::info!(job = %job.name, "removing a job an earlier run left behind");
                let _ = self.docker().delete_service(&id).await;
            }
        }
        let created =
            self.docker().create_service(spec, None).await.map_err(|e| Self::request_error("create a swarm job", e))?;
        let id = created.id.unwrap_or_default();
        let service = Service {
            id: id.clone(),
            name: job.name.clone(),
            image: String::new(),
            replicas: None,
            desired_tasks: None,
            labels: HashMap::new(),
            env: Vec::new(),
            update: None,
        };
        let deadline = std::time::Instant::now() + limit;
        let ended = loop {
            let tasks = self.stack_tasks(std::slice::from_ref(&service)).await;
            let done = tasks.as_ref().ok().and_then(|tasks| {
                tasks.iter().find_map(|t| match t.state.as_str() {
                    "complete" => Some(Ok(0)),
                    "failed" => Some(Ok(t.exit_code.unwrap_or(-1))),
                    "rejected" | "orphaned" => Some(Err(t.message.clone())),
                    _ => None,
                })
            });
            if let Some(done) = done {
                break Ok(done);
            }
            if std::time::Instant::now() > deadline {
                break Ok(Err(format!("it did not end within {} s", limit.as_secs())));
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        };
        if let Err(e) = self.docker().delete_service(&id).await {
            tracing::warn!(job = %job.name, error = %e, "the ended job could not be removed; the next run removes it");
        }
        ended
    }
}
