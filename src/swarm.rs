//! The swarm target's shell (`deploy.target: swarm`): the manager benchform talks to, what the
//! swarm runs of the stack, and the stack file (`benchform_core::swarm`) the manifest's compose
//! files become. Observation costs the same for any stack: the nodes, the stack's services and
//! their tasks, three requests to the manager.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use benchform_core::status::ObservedContainer;
use benchform_core::swarm::{CONFIG_HASH_LABEL, ONE_SHOT_LABEL, OPS_SERVICE, Ops, Stack, StackOptions};
use benchform_docker::swarm::{Node, Service, Task};
use benchform_docker::{Engine, EngineError};
use benchform_manifest::Manifest;
use serde_json::Value;

use crate::observe::ObserveError;

/// Where frappe_docker's images keep the bench's sites.
const SITES_TARGET: &str = "/home/frappe/frappe-bench/sites";

/// The swarm manager benchform deploys through: the engine of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    /// Its node's id: benchform's ops task runs there, so that its engine reaches it.
    pub node_id: String,
}

/// The engine as a swarm manager, or why it cannot be one.
pub async fn manager(engine: &Engine) -> Result<Manager, ObserveError> {
    let host = engine.host();
    let at_manager = "point DOCKER_HOST (or the Docker context) at a manager of the swarm (`docker node ls` answers \
                      there)";
    match engine.swarm_membership().await {
        Err(e) => Err(ObserveError::new("engine", e, "check the engine's health (`docker info`)")),
        Ok(None) => Err(ObserveError::new(
            "swarm",
            format!("deploy.target is swarm, and the engine at {host} is in no swarm"),
            format!("{at_manager}, or make this engine one with `docker swarm init`"),
        )),
        Ok(Some(m)) if m.state != "active" => Err(ObserveError::new(
            "swarm",
            format!("the engine at {host} is in the swarm as `{}`, not active", m.state),
            "bring it back into the swarm (`docker info` says why), or point DOCKER_HOST at another manager",
        )),
        Ok(Some(m)) if !m.manager => Err(ObserveError::new(
            "swarm",
            format!("the engine at {host} is a worker of the swarm: only managers deploy stacks and see their tasks"),
            at_manager,
        )),
        Ok(Some(m)) => {
            // benchform's ops task runs on this node: it must take tasks.
            let nodes = engine.swarm_nodes().await.map_err(|e| ObserveError::new("swarm", e, at_manager))?;
            match nodes.iter().find(|n| n.id == m.node_id) {
                Some(node) if node.availability != "active" => Err(ObserveError::new(
                    "swarm",
                    format!(
                        "the manager at {host} ({}) is `{}`: benchform runs bench in a task on the manager's node",
                        node.hostname, node.availability
                    ),
                    format!(
                        "let it take tasks (`docker node update --availability active {}`), or point DOCKER_HOST at \
                         a manager that does",
                        node.hostname
                    ),
                )),
                _ => Ok(Manager { node_id: m.node_id }),
            }
        }
    }
}

/// Where `bench` runs for `manifest`'s deployment: the running backend container (compose), or
/// benchform's ops task on `manager`'s node (swarm).
pub async fn bench_container(
    engine: &Engine,
    manifest: &Manifest,
    manager: Option<&Manager>,
) -> Result<Option<String>, EngineError> {
    Ok(match manager {
        None => engine.running_container(&manifest.project, &manifest.deploy.backend_service).await?.map(|c| c.id),
        Some(manager) => StackState::read(engine, &manifest.project).await?.ops_container(manager),
    })
}

/// What the swarm runs of one stack, as the manager reports it.
#[derive(Debug, Clone, Default)]
pub struct StackState {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
}

impl StackState {
    pub async fn read(engine: &Engine, project: &str) -> Result<StackState, EngineError> {
        let (nodes, services) = tokio::try_join!(engine.swarm_nodes(), engine.stack_services(project))?;
        let tasks = engine.stack_tasks(&services).await?;
        Ok(StackState { nodes, services, tasks })
    }

    /// The container of benchform's ops task on the manager's node, once it runs: where `bench`
    /// commands run.
    pub fn ops_container(&self, manager: &Manager) -> Option<String> {
        self.tasks
            .iter()
            .filter(|t| t.service == OPS_SERVICE && t.node_id == manager.node_id)
            .filter(|t| t.state == "running" && t.desired_state == "running")
            .find_map(|t| t.container_id.clone())
    }

    /// Where each service's running tasks are: service → node host names.
    pub fn placement(&self) -> BTreeMap<String, Vec<String>> {
        let host: HashMap<&str, &str> = self.nodes.iter().map(|n| (n.id.as_str(), n.hostname.as_str())).collect();
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.tasks.iter().filter(|t| t.state == "running" && t.desired_state == "running") {
            let on = host.get(t.node_id.as_str()).map_or(t.node_id.as_str(), |h| *h).to_string();
            out.entry(t.service.clone()).or_default().push(on);
        }
        for hosts in out.values_mut() {
            hosts.sort();
        }
        out
    }

    /// What became of the task swarm names at the end of an update's `message` ("update paused
    /// due to failure or early termination of task <id>"): `; task <id> on <node>: <state>
    /// (<its error>)`, or nothing when swarm named none this stack still lists.
    fn failed_task(&self, message: &str) -> String {
        let Some(task) = message.rsplit(' ').next().and_then(|id| self.tasks.iter().find(|t| t.id == id)) else {
            return String::new();
        };
        let node = self.nodes.iter().find(|n| n.id == task.node_id).map_or(task.node_id.as_str(), |n| &n.hostname);
        let mut out = format!("; task {} on {node}: {}", task.id, task.state);
        if let Some(code) = task.exit_code.filter(|_| task.state == "failed" || task.state == "complete") {
            out.push_str(&format!(" (exit {code})"));
        }
        if !task.message.is_empty() {
            out.push_str(&format!(", {}", task.message));
        }
        out
    }

    /// One entry per service, in the shape the planner reads for compose's containers: running
    /// when all its replicas run its image (a one-shot service: exited 0 once its latest task
    /// completed), with the hash of its stack configuration.
    pub fn observed(&self, project: &str, stack: &Stack) -> Vec<ObservedContainer> {
        let ready = self.nodes.iter().filter(|n| n.state == "ready" && n.availability == "active").count() as u64;
        self.services
            .iter()
            .map(|s| {
                // Only the tasks of the service's present configuration count: during a rolling
                // update, the old ones run on (on the same image, when only the environment changed).
                let hash = s.labels.get(CONFIG_HASH_LABEL);
                let tasks: Vec<&Task> = self
                    .tasks
                    .iter()
                    .filter(|t| t.service == s.name && (hash.is_none() || t.labels.get(CONFIG_HASH_LABEL) == hash))
                    .collect();
                let desired_hash = stack.file["services"][&s.name]["deploy"]["labels"][CONFIG_HASH_LABEL].as_str();
                let update = s.update.as_ref().map(|(state, message)| (state.as_str(), message.as_str()));
                let (state, exit_code) = match update {
                    // Swarm put the previous configuration back (`failure_action: rollback`).
                    Some((state, message))
                        if state.starts_with("rollback") && hash.map(String::as_str) != desired_hash =>
                    {
                        (format!("{ROLLED_BACK} ({state}): {message}{}", self.failed_task(message)), None)
                    }
                    _ if s.labels.contains_key(ONE_SHOT_LABEL) => one_shot_state(&tasks),
                    // Stuck until someone updates it again.
                    Some((state @ ("paused" | "rollback_paused"), message)) => {
                        (format!("update {state}: {message}{}", self.failed_task(message)), None)
                    }
                    // Replicated: its replicas; global: as many as swarm means to run.
                    _ => (service_state(s, &tasks, s.replicas.or(s.desired_tasks).unwrap_or(ready)), None),
                };
                ObservedContainer {
                    service: s.name.clone(),
                    name: format!("{project}_{}", s.name),
                    state,
                    image: s.image.clone(),
                    image_id: s.image.clone(),
                    desired_image: None,
                    built_for: None,
                    // A spec changed by hand since (scaled, environment edited) is not the
                    // configuration its label names.
                    config_hash: match changed_by_hand(s, &stack.file["services"][&s.name]) {
                        None => hash.cloned(),
                        Some(what) => Some(format!("{}{what}", benchform_core::swarm::CHANGED_BY_HAND)),
                    },
                    desired_config_hash: desired_hash.map(str::to_string),
                    exit_code,
                    compose: None,
                }
            })
            .collect()
    }
}

const ROLLED_BACK: &str = "rolled back by swarm";

/// Whether a service's state (as [`StackState::observed`] words it) says swarm stopped its
/// rolling update: paused, or rolled back to the previous configuration. Nothing converges then
/// until the service is updated again.
pub fn update_stopped(state: &str) -> bool {
    ["update paused", "update rollback_paused", ROLLED_BACK].iter().any(|s| state.starts_with(s))
}

/// What a service's live spec says that the stack file it was deployed from does not: its
/// replicas (`docker service scale`), its environment (`docker service update --env-add`).
/// Only what benchform can compare without redoing the Docker CLI's conversion.
fn changed_by_hand(s: &Service, file: &Value) -> Option<String> {
    // Deployed from another file: the hash label already says so.
    let deployed = file["deploy"]["labels"][CONFIG_HASH_LABEL].as_str();
    if s.labels.get(CONFIG_HASH_LABEL).map(String::as_str) != deployed || file.is_null() {
        return None;
    }
    let global = file["deploy"]["mode"].as_str() == Some("global");
    let replicas = file["deploy"]["replicas"].as_u64().unwrap_or(1);
    if !global && s.replicas.is_some_and(|n| n != replicas) {
        return Some(format!("{} replicas, the files say {replicas}", s.replicas.unwrap_or_default()));
    }
    let want: BTreeSet<String> = match &file["environment"] {
        Value::Object(vars) => vars
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Null => None,
                Value::String(v) => Some(format!("{k}={v}")),
                other => Some(format!("{k}={other}")),
            })
            .collect(),
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => BTreeSet::new(),
    };
    let have: BTreeSet<String> = s.env.iter().cloned().collect();
    // The variables set on one side only, or to another value: names only (values may be secrets).
    let differ: BTreeSet<&str> =
        want.symmetric_difference(&have).map(|e| e.split('=').next().unwrap_or_default()).collect();
    (!differ.is_empty()).then(|| format!("environment {}", differ.into_iter().collect::<Vec<_>>().join(", ")))
}

fn newest<'t>(tasks: &[&'t Task]) -> Option<&'t Task> {
    let at = |t: &Task| t.created_at.parse::<jiff::Timestamp>().ok();
    tasks.iter().copied().max_by_key(|t| at(t))
}

/// A one-shot service by its latest task: `exited` with its code once it ended.
fn one_shot_state(tasks: &[&Task]) -> (String, Option<i64>) {
    match newest(tasks) {
        None => ("starting".to_string(), None),
        Some(t) if t.state == "complete" => ("exited".to_string(), Some(0)),
        Some(t) if t.state == "failed" => ("exited".to_string(), Some(t.exit_code.unwrap_or(1))),
        Some(t) if t.state == "rejected" => (format!("rejected: {}", t.message), None),
        Some(t) => (t.state.clone(), None),
    }
}

/// `running` when `wanted` tasks run the service's image; else how many run, and the latest
/// failure's message.
fn service_state(s: &Service, tasks: &[&Task], wanted: u64) -> String {
    let running =
        tasks.iter().filter(|t| t.state == "running" && t.desired_state == "running" && t.image == s.image).count()
            as u64;
    if running >= wanted {
        return "running".to_string();
    }
    let failed: Vec<&Task> =
        tasks.iter().copied().filter(|t| matches!(t.state.as_str(), "failed" | "rejected")).collect();
    match newest(&failed) {
        Some(t) => format!("{running}/{wanted} tasks running (last failure: {})", t.message),
        None => format!("{running}/{wanted} tasks running"),
    }
}

/// The volume the backend mounts at the bench's sites folder (frappe_docker: `sites`).
pub fn sites_volume(rendered: &Value, backend: &str) -> String {
    rendered["services"][backend]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["target"].as_str() == Some(SITES_TARGET) && v["type"].as_str() == Some("volume"))
        .and_then(|v| v["source"].as_str())
        .unwrap_or("sites")
        .to_string()
}

/// The stack the manifest's compose files become (`rendered` by compose), on a swarm of `nodes`
/// nodes, or why it cannot run safely there (every problem, each with its fix).
pub fn stack(rendered: &Value, manifest: &Manifest, manager: &Manager, nodes: usize) -> Result<Stack, ObserveError> {
    let backend = &manifest.deploy.backend_service;
    let options = StackOptions {
        project: manifest.project.clone(),
        nodes,
        sites_volume: sites_volume(rendered, backend),
        scheduler: "scheduler".to_string(),
        ops: Some(Ops { backend: backend.clone(), node: manager.node_id.clone() }),
    };
    benchform_core::swarm::stack_file(rendered, &options).map_err(|problems| {
        let what = problems.iter().map(|p| format!("{}: {}", p.at, p.what)).collect::<Vec<_>>().join("; ");
        let fix = problems.iter().map(|p| format!("{}: {}", p.at, p.fix)).collect::<Vec<_>>().join("; ");
        ObserveError::new("stack", format!("the compose files cannot run safely on this swarm: {what}"), fix)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: &str, service: &str, state: &str, exit_code: Option<i64>, message: &str) -> Task {
        Task {
            id: id.into(),
            service: service.into(),
            node_id: "n3".into(),
            state: state.into(),
            desired_state: "shutdown".into(),
            image: "erp:new".into(),
            container_id: None,
            exit_code,
            message: message.into(),
            created_at: "2026-12-05T01:00:00Z".into(),
            labels: HashMap::from([(CONFIG_HASH_LABEL.to_string(), "new".to_string())]),
        }
    }

    fn service(name: &str, hash: &str, update: (&str, &str)) -> Service {
        Service {
            id: format!("id-{name}"),
            name: name.into(),
            image: "erp:new".into(),
            replicas: Some(2),
            desired_tasks: Some(2),
            labels: HashMap::from([(CONFIG_HASH_LABEL.to_string(), hash.to_string())]),
            env: Vec::new(),
            update: Some((update.0.into(), update.1.into())),
        }
    }

    /// A stopped update names the task swarm stopped on, its node, how it ended and its error;
    /// a task swarm no longer lists adds nothing; a running update is not stopped.
    #[test]
    fn a_stopped_update_names_its_task_its_node_and_its_error() {
        let state = StackState {
            nodes: vec![Node {
                id: "n3".into(),
                hostname: "bf-swarm3".into(),
                state: "ready".into(),
                availability: "active".into(),
                manager: false,
            }],
            services: vec![
                service("backend", "new", ("paused", "update paused due to failure or early termination of task t1")),
                service("worker", "old", ("rollback_completed", "update rolled back due to failure … of task gone")),
                service("scheduler", "new", ("updating", "update in progress")),
            ],
            tasks: vec![
                task("t1", "backend", "failed", Some(1), "task: non-zero exit (1)"),
                task("t2", "worker", "rejected", None, "error creating vxlan interface: file exists"),
            ],
        };
        let hashes = json!({"deploy": {"labels": {CONFIG_HASH_LABEL: "new"}}});
        let stack = Stack {
            file: json!({"services": {"backend": hashes, "worker": hashes, "scheduler": hashes}}),
            jobs: Vec::new(),
            notes: Vec::new(),
        };
        let observed = state.observed("p", &stack);
        let of = |name: &str| observed.iter().find(|c| c.service == name).unwrap().state.clone();
        assert_eq!(
            of("backend"),
            "update paused: update paused due to failure or early termination of task t1; task t1 on bf-swarm3: \
             failed (exit 1), task: non-zero exit (1)"
        );
        assert_eq!(
            of("worker"),
            "rolled back by swarm (rollback_completed): update rolled back due to failure … of task gone"
        );
        assert!(update_stopped(&of("backend")) && update_stopped(&of("worker")));
        assert_eq!(of("scheduler"), "0/2 tasks running");
        assert!(!update_stopped(&of("scheduler")));
    }
}
