//! Compose configuration → the stack file Docker Swarm deploys, pure.
//!
//! benchform deploys to a swarm with the Docker CLI's `docker stack deploy`, handing it a stack
//! file it renders itself from compose's own rendering (`config`: merged, interpolated, anchors
//! resolved): Debian's 20.10 CLI refuses compose v2's output as it is
//! ("unsupported Compose file version"), and frappe_docker's files use compose idioms swarm does
//! not have. Each is translated or refused here, never dropped silently:
//!
//! - `name` and `x-*` extension keys: dropped (the stack's name is the project); networks and
//!   volumes lose the `name` compose gave them when it is the project-prefixed default, so the
//!   stack namespaces them the same way (`<project>_sites`).
//! - `pull_policy`: dropped (a swarm node pulls what it lacks); `platform: linux/amd64` becomes
//!   placement constraints on the node's OS and architecture.
//! - `restart`: becomes `deploy.restart_policy` (`unless-stopped`/`always` → `any`,
//!   `on-failure[:N]` → `on-failure` with at most N attempts, `no` → `none`) unless the service
//!   sets one.
//! - `depends_on` (short or long form, with conditions): dropped — swarm starts services in no
//!   order (the swarm target's deploy will wait for the one-shot services itself).
//! - one-shot services (frappe_docker's `configurator`: others wait for it to complete): one
//!   replica restarted only on failure, so it runs to completion once each time its spec changes
//!   (a new image) and then stays complete, labelled [`ONE_SHOT_LABEL`]; a `deploy` of its own
//!   that contradicts this is refused. A `replicated-job` would say it better, but the 20.10 CLI's
//!   stack conversion refuses that mode ("Unknown mode: replicated-job").
//! - published ports: `published` as a number (compose v2 writes a string); a range, or a port
//!   bound to one host address, is refused.
//! - keys with a `null` value (compose writes `command: null`): dropped; any other key the stack
//!   format does not have is refused, never passed on for the CLI to reject.
//!
//! And what would lose data or run work twice is refused, with its fix ([`Problem`]):
//!
//! - on more than one node, the `sites` volume must be shared storage: a volume driver other than
//!   `local`, or `local` with `driver_opts` (NFS, or a bind of a path present on every node);
//! - on more than one node, a service that keeps data in a node-local named volume (the database,
//!   redis-queue) must be pinned to one node by a placement constraint (`node.hostname==…`,
//!   `node.id==…`, `node.labels.…==…`) and run one replica, or it could be rescheduled onto an
//!   empty volume;
//! - the scheduler runs one replica, never `global` (two would run every scheduled job twice).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// What the stack is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOptions {
    /// The stack's name (the manifest's `project`).
    pub project: String,
    /// How many nodes the swarm has (observed): single-node swarms need no shared storage.
    pub nodes: usize,
    /// The volume mounted at the bench's `sites` folder (frappe_docker: `sites`).
    pub sites_volume: String,
    /// The service that runs `bench schedule` (frappe_docker: `scheduler`).
    pub scheduler: String,
    /// Where benchform runs `bench`: see [`Ops`]; `None` adds no such service.
    pub ops: Option<Ops>,
}

/// benchform's own service in the stack, [`OPS_SERVICE`]: one task of the backend's image, with
/// its environment, volumes and networks, that only sleeps, pinned to the node whose engine
/// benchform talks to. `bench` commands run in it as execs through that engine — with standard
/// input for the passwords bench prompts for, output streamed, the exit status read — as they run
/// in the backend container on compose. (Swarm's jobs would take none of those: a job's command
/// is in its spec for anyone to read, and its output only comes back through the logs.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ops {
    /// The service whose image, environment, volumes and networks it takes (`deploy.backend_service`).
    pub backend: String,
    /// The id of the node benchform's engine runs on (`docker info`: `Swarm.NodeID`).
    pub node: String,
}

/// The name of benchform's ops service in the stack (`<project>_benchform-ops` on the swarm).
pub const OPS_SERVICE: &str = "benchform-ops";

/// How the shell marks a service's configuration hash when its live spec was changed by hand
/// (scaled, environment edited) since it was deployed: this prefix, then what changed. The
/// planner gives it as the reason to deploy.
pub const CHANGED_BY_HAND: &str = "changed by hand: ";

/// The label holding each service's configuration hash (of its entry in the stack file, this
/// label aside): what `plan` compares with the running service, as compose's config hash.
pub const CONFIG_HASH_LABEL: &str = "org.benchform.config-hash";

/// A stack swarm could not run safely, or at all: where, what, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The service (or `volumes.NAME`) it concerns.
    pub at: String,
    pub what: String,
    pub fix: String,
}

/// The rendered stack, and what was translated (for the plan's deploy reason and `status`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// The stack file (`version: "3.8"`), as JSON, which `docker stack deploy -c -` reads.
    pub file: Value,
    /// The one-shot services (one replica, restarted on failure only, labelled [`ONE_SHOT_LABEL`]).
    pub jobs: Vec<String>,
    /// Each translation, in words (`backend: restart unless-stopped → restart_policy any`).
    pub notes: Vec<String>,
}

/// The label on one-shot services: they run to completion, so "0 of 1 running" is their success.
pub const ONE_SHOT_LABEL: &str = "org.benchform.one-shot";

/// The file format the stack file declares: the newest Debian's 20.10 CLI reads.
pub const STACK_VERSION: &str = "3.8";

const SITES_TARGET: &str = "/home/frappe/frappe-bench/sites";

/// Translate compose's rendered configuration into a stack file, or say why it cannot run safely.
pub fn stack_file(rendered: &Value, o: &StackOptions) -> Result<Stack, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let empty = Map::new();
    let services_in = rendered.get("services").and_then(Value::as_object).unwrap_or(&empty);
    let volumes_in = rendered.get("volumes").and_then(Value::as_object).unwrap_or(&empty);

    // One-shot services: what others wait for with `service_completed_successfully`.
    let mut awaited: Vec<String> = Vec::new();
    for svc in services_in.values() {
        if let Some(deps) = svc.get("depends_on").and_then(Value::as_object) {
            for (dep, how) in deps {
                let completed = how.get("condition").and_then(Value::as_str) == Some("service_completed_successfully");
                if completed && !awaited.contains(dep) {
                    awaited.push(dep.clone());
                }
            }
        }
    }

    let mut services = Map::new();
    let mut jobs = Vec::new();
    for (name, svc) in services_in {
        let Some(svc) = svc.as_object() else { continue };
        let mut out: Map<String, Value> =
            svc.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut deploy = out.remove("deploy").and_then(|d| d.as_object().cloned()).unwrap_or_default();

        if out.remove("pull_policy").is_some() {
            notes.push(format!("{name}: pull_policy dropped (a node pulls what it lacks)"));
        }
        if let Some(platform) = out.remove("platform").and_then(|p| p.as_str().map(str::to_string)) {
            let constraints = platform_constraints(&platform);
            notes.push(format!("{name}: platform {platform} → placement {}", constraints.join(", ")));
            let placement = deploy.entry("placement").or_insert_with(|| json!({}));
            if let Some(p) = placement.as_object_mut() {
                let list = p.entry("constraints").or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    for c in constraints {
                        if !list.iter().any(|v| v.as_str() == Some(&c)) {
                            list.push(Value::String(c));
                        }
                    }
                }
            }
        }
        let restart = out.remove("restart").and_then(|r| r.as_str().map(str::to_string));
        // One-shot: what other services wait for with `service_completed_successfully`.
        let one_shot = awaited.contains(name);
        if one_shot {
            let conflicting = ["mode", "replicas", "restart_policy"].iter().find(|k| deploy.contains_key(**k));
            if let Some(key) = conflicting {
                problems.push(Problem {
                    at: name.clone(),
                    what: format!("other services wait for it to complete, and it sets `deploy.{key}`"),
                    fix:
                        "leave `mode`, `replicas` and `restart_policy` out: benchform runs it as one replica restarted \
                          on failure only"
                            .to_string(),
                });
            }
            deploy.insert("mode".to_string(), json!("replicated"));
            deploy.insert("replicas".to_string(), json!(1));
            deploy.insert("restart_policy".to_string(), json!({"condition": "on-failure"}));
            add_label(deploy.entry("labels").or_insert_with(|| json!({})), ONE_SHOT_LABEL, "true");
            jobs.push(name.clone());
            notes.push(format!("{name}: runs to completion once per change (one replica, restarted on failure only)"));
        } else if let Some(restart) = restart
            && !deploy.contains_key("restart_policy")
        {
            match restart_policy(&restart) {
                Some(policy) => {
                    let condition = policy["condition"].as_str().unwrap_or_default();
                    let attempts =
                        policy.get("max_attempts").map(|n| format!(", at most {n} attempts")).unwrap_or_default();
                    notes.push(format!("{name}: restart {restart} → restart_policy {condition}{attempts}"));
                    deploy.insert("restart_policy".to_string(), policy);
                }
                None => problems.push(Problem {
                    at: name.clone(),
                    what: format!("`restart: {restart}` is no restart policy swarm knows"),
                    fix: "use no, always, unless-stopped, on-failure or on-failure:N".to_string(),
                }),
            }
        }
        if out.remove("depends_on").is_some() {
            notes.push(format!("{name}: depends_on dropped (swarm starts services in no order)"));
        }
        // Published ports as a stack file takes them: `published` a number, no host address.
        if let Some(ports) = out.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut() {
                let Some(p) = port.as_object_mut() else { continue };
                p.remove("app_protocol");
                p.remove("name");
                if p.get("host_ip").is_some_and(|h| h.as_str().is_some_and(|h| !h.is_empty())) {
                    problems.push(Problem {
                        at: name.clone(),
                        what: "publishes a port on one host address (`host_ip`), which swarm's routing mesh cannot"
                            .to_string(),
                        fix: "publish it on every address, or put a proxy in front".to_string(),
                    });
                }
                p.remove("host_ip");
                if let Some(published) = p.get("published").and_then(Value::as_str).map(str::to_string) {
                    match published.parse::<u16>() {
                        Ok(n) => {
                            p.insert("published".to_string(), json!(n));
                        }
                        Err(_) => problems.push(Problem {
                            at: name.clone(),
                            what: format!("publishes the port range `{published}`, which a stack file cannot"),
                            fix: "publish each port on its own".to_string(),
                        }),
                    }
                }
            }
        }
        for key in out.keys().filter(|k| !SERVICE_KEYS.contains(&k.as_str())) {
            problems.push(Problem {
                at: name.clone(),
                what: format!("sets `{key}`, which swarm's stack files (version {STACK_VERSION}) do not have"),
                fix: format!("leave `{key}` out of the compose files deployed to a swarm (an override can reset it)"),
            });
        }
        if let Some(volumes) = out.get_mut("volumes").and_then(Value::as_array_mut) {
            for v in volumes.iter_mut() {
                // `create_host_path` is compose's own; a stack file knows no such key.
                if let Some(bind) = v.get_mut("bind").and_then(Value::as_object_mut) {
                    bind.remove("create_host_path");
                    if bind.is_empty()
                        && let Some(obj) = v.as_object_mut()
                    {
                        obj.remove("bind");
                    }
                }
                if let Some(obj) = v.as_object_mut()
                    && obj.get("volume").is_some_and(|x| x.as_object().is_some_and(Map::is_empty))
                {
                    obj.remove("volume");
                }
            }
        }

        // The stack format takes a CPU count as a string (compose v2 writes a number).
        if let Some(resources) = deploy.get_mut("resources").and_then(Value::as_object_mut) {
            for kind in ["limits", "reservations"] {
                if let Some(cpus) = resources.get_mut(kind).and_then(|k| k.get_mut("cpus"))
                    && let Some(n) = cpus.as_f64()
                {
                    *cpus = json!(n.to_string());
                }
            }
        }

        // What could lose data, or run the scheduler twice.
        let replicas = deploy.get("replicas").and_then(Value::as_u64).unwrap_or(1);
        let global = deploy.get("mode").and_then(Value::as_str) == Some("global");
        if *name == o.scheduler && (replicas != 1 || global) {
            let runs = if global { "on every node (mode: global)".to_string() } else { format!("{replicas} replicas") };
            problems.push(Problem {
                at: name.clone(),
                what: format!(
                    "the scheduler runs {runs}; it must run exactly once (two run every scheduled job twice)"
                ),
                fix: "give it `deploy.replicas: 1` (the default) and no `mode: global`".to_string(),
            });
        }
        if o.nodes > 1 {
            for vol in named_volumes(&out) {
                if vol == o.sites_volume || volumes_in.get(&vol).is_some_and(is_shared) {
                    continue;
                }
                let pinned = constraints_of(&deploy).iter().any(|c| pins_a_node(c));
                if !pinned || replicas > 1 || global {
                    problems.push(Problem {
                        at: name.clone(),
                        what: format!(
                            "keeps its data in the node-local volume `{vol}`, and swarm could start it on another of the \
                             {} nodes, on an empty volume",
                            o.nodes
                        ),
                        fix: "pin it to one node with one replica (`deploy.placement.constraints: [node.hostname == \
                              db-host]`, or a node label), put the volume on shared storage, or run it outside the \
                              stack"
                            .to_string(),
                    });
                }
            }
        }
        if !deploy.is_empty() {
            out.insert("deploy".to_string(), Value::Object(deploy));
        }
        services.insert(name.clone(), Value::Object(out));
    }

    if let Some(ops) = &o.ops {
        match (services_in.contains_key(OPS_SERVICE), services.get(&ops.backend)) {
            (true, _) => problems.push(Problem {
                at: OPS_SERVICE.to_string(),
                what: "the compose files define a service by the name benchform gives its own".to_string(),
                fix: format!("rename your `{OPS_SERVICE}` service"),
            }),
            (false, None) => problems.push(Problem {
                at: ops.backend.clone(),
                what: "the backend service (deploy.backend_service) is not in the compose files".to_string(),
                fix: "name the service that runs gunicorn in deploy.backend_service".to_string(),
            }),
            (false, Some(backend)) => {
                let service = ops_service(backend, &ops.node);
                services.insert(OPS_SERVICE.to_string(), service);
            }
        }
    }
    // The hash on the service (what its spec says now) and on its containers (what each task
    // was started from: a task of an older configuration is told apart even on the same image).
    for service in services.values_mut() {
        let hash = crate::tag::sha256_hex(canonical(service).to_string().as_bytes());
        if let Some(svc) = service.as_object_mut() {
            add_label(svc.entry("labels").or_insert_with(|| json!({})), CONFIG_HASH_LABEL, &hash);
            let deploy = svc.entry("deploy").or_insert_with(|| json!({}));
            if let Some(deploy) = deploy.as_object_mut() {
                add_label(deploy.entry("labels").or_insert_with(|| json!({})), CONFIG_HASH_LABEL, &hash);
            }
        }
    }

    // The sites volume: the same sites directory on every node.
    let mounts_sites = services_in.values().any(|s| named_volumes_of(s).contains(&o.sites_volume));
    if o.nodes > 1 && mounts_sites {
        let shared = volumes_in.get(&o.sites_volume).is_some_and(is_shared);
        if !shared {
            problems.push(Problem {
                at: format!("volumes.{}", o.sites_volume),
                what: format!(
                    "the `{}` volume ({SITES_TARGET}) would be node-local: each of the {} nodes would have its own, \
                     empty sites directory",
                    o.sites_volume, o.nodes
                ),
                fix: format!(
                    "declare it on shared storage in a compose override, e.g. `volumes: {{{}: {{driver_opts: {{type: \
                     nfs, o: \"addr=nfs.example.com,rw,nfsvers=4\", device: \":/exports/sites\"}}}}}}`, or a \
                     volume driver every node has",
                    o.sites_volume
                ),
            });
        }
    }

    let mut top = Map::new();
    top.insert("version".to_string(), json!(STACK_VERSION));
    top.insert("services".to_string(), Value::Object(services));
    for key in ["networks", "volumes", "configs", "secrets"] {
        let Some(section) = rendered.get(key).and_then(Value::as_object) else { continue };
        let mut out = Map::new();
        for (name, def) in section {
            let mut def = def.as_object().cloned().unwrap_or_default();
            // The default name compose gives it is the one the stack gives it too.
            if def.get("name").and_then(Value::as_str) == Some(&format!("{}_{name}", o.project)) {
                def.remove("name");
            }
            if def.get("ipam").is_some_and(|i| i.as_object().is_some_and(Map::is_empty)) {
                def.remove("ipam");
            }
            out.insert(name.clone(), Value::Object(def));
        }
        top.insert(key.to_string(), Value::Object(out));
    }
    if problems.is_empty() { Ok(Stack { file: Value::Object(top), jobs, notes }) } else { Err(problems) }
}

/// [`OPS_SERVICE`]: the backend's image, environment, volumes and networks, one task that sleeps
/// on `node`, no ports and no healthcheck.
fn ops_service(backend: &Value, node: &str) -> Value {
    let mut out = Map::new();
    for key in ["image", "environment", "volumes", "networks", "user", "working_dir", "extra_hosts", "dns"] {
        if let Some(v) = backend.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    out.insert("entrypoint".to_string(), json!(["sleep", "infinity"]));
    out.insert(
        "deploy".to_string(),
        json!({
            "mode": "replicated",
            "replicas": 1,
            "placement": {"constraints": [format!("node.id == {node}")]},
            "restart_policy": {"condition": "any"},
        }),
    );
    Value::Object(out)
}

/// Add `key=value` to a `labels` entry, a map or a `KEY=VALUE` list as compose may write either.
fn add_label(labels: &mut Value, key: &str, value: &str) {
    match labels {
        Value::Object(m) => {
            m.insert(key.to_string(), json!(value));
        }
        Value::Array(items) => {
            let prefix = format!("{key}=");
            items.retain(|i| !i.as_str().is_some_and(|s| s.starts_with(&prefix)));
            items.push(json!(format!("{key}={value}")));
        }
        other => *other = json!({ key: value }),
    }
}

/// `value` with every object's keys in order, so that equal configurations hash the same.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&m[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The service keys of the stack file format ([`STACK_VERSION`]), after translation.
const SERVICE_KEYS: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "deploy",
    "devices",
    "dns",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "external_links",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "links",
    "logging",
    "mac_address",
    "network_mode",
    "networks",
    "pid",
    "ports",
    "privileged",
    "read_only",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "volumes",
    "working_dir",
];

/// compose's `restart` as swarm's restart policy: `always`/`unless-stopped` → any,
/// `on-failure[:N]` → on-failure (at most N attempts), `no` → none.
fn restart_policy(restart: &str) -> Option<Value> {
    match restart {
        "always" | "unless-stopped" => Some(json!({"condition": "any"})),
        "no" => Some(json!({"condition": "none"})),
        "on-failure" => Some(json!({"condition": "on-failure"})),
        other => {
            let attempts: u64 = other.strip_prefix("on-failure:")?.parse().ok()?;
            Some(json!({"condition": "on-failure", "max_attempts": attempts}))
        }
    }
}

fn platform_constraints(platform: &str) -> Vec<String> {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or("linux");
    let arch = match parts.next() {
        Some("amd64") => Some("x86_64"),
        Some("arm64") => Some("aarch64"),
        Some(other) => Some(other),
        None => None,
    };
    let mut out = vec![format!("node.platform.os == {os}")];
    if let Some(arch) = arch {
        out.push(format!("node.platform.arch == {arch}"));
    }
    out
}

fn constraints_of(deploy: &Map<String, Value>) -> Vec<String> {
    deploy
        .get("placement")
        .and_then(|p| p.get("constraints"))
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A constraint that names one node (by name, id or label equality).
fn pins_a_node(constraint: &str) -> bool {
    let Some((key, _)) = constraint.split_once("==") else { return false };
    let key = key.trim();
    key == "node.hostname" || key == "node.id" || key.starts_with("node.labels.")
}

fn named_volumes(svc: &Map<String, Value>) -> Vec<String> {
    named_volumes_of(&Value::Object(svc.clone()))
}

/// The named volumes a service mounts (long syntax as compose renders it, or `name:/path`).
fn named_volumes_of(svc: &Value) -> Vec<String> {
    let Some(list) = svc.get("volumes").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter_map(|v| match v {
            Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("volume") => {
                m.get("source").and_then(Value::as_str).map(str::to_string)
            }
            Value::String(s) => {
                let source = s.split(':').next()?;
                (!source.starts_with('/') && !source.starts_with('.')).then(|| source.to_string())
            }
            _ => None,
        })
        .collect()
}

/// Storage every node sees: a driver other than `local`, or `local` with options (NFS, a bind of
/// a path present on every node).
fn is_shared(volume: &Value) -> bool {
    let driver = volume.get("driver").and_then(Value::as_str).unwrap_or("local");
    let opts = volume.get("driver_opts").and_then(Value::as_object).is_some_and(|o| !o.is_empty());
    driver != "local" || opts
}

/// Translation notes grouped by service, for display.
pub fn notes_by_service(stack: &Stack) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for note in &stack.notes {
        if let Some((svc, what)) = note.split_once(": ") {
            out.entry(svc.to_string()).or_default().push(what.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// frappe_docker's compose.yaml with the MariaDB and redis overrides, as compose v2 renders it
    /// (`config --format json`), cut to what matters here.
    fn rendered() -> Value {
        let bench = |command: Value| {
            json!({
                "command": command, "entrypoint": null, "image": "registry.example.com/acme/erpnext:bf1-x",
                "platform": "linux/amd64", "pull_policy": "always", "restart": "unless-stopped",
                "networks": {"default": null},
                "depends_on": {"configurator": {"condition": "service_completed_successfully", "required": true}},
                "volumes": [{"type": "volume", "source": "sites", "target": SITES_TARGET, "volume": {}}]
            })
        };
        let mut configurator = bench(json!(["ls -1 apps > sites/apps.txt;"]));
        configurator["restart"] = json!("on-failure");
        configurator["depends_on"] = json!({"db": {"condition": "service_healthy", "required": true}});
        json!({
            "name": "erp",
            "services": {
                "backend": bench(Value::Null),
                "configurator": configurator,
                "scheduler": bench(json!(["bench", "schedule"])),
                "db": {"image": "mariadb:11.8", "restart": "unless-stopped",
                       "healthcheck": {"test": ["CMD", "healthcheck.sh"], "interval": "1s"},
                       "volumes": [{"type": "volume", "source": "db-data", "target": "/var/lib/mysql", "volume": {}}]},
                "redis-queue": {"image": "redis:8.6-alpine", "restart": "unless-stopped",
                                "volumes": [{"type": "volume", "source": "redis-queue-data", "target": "/data", "volume": {}}]}
            },
            "networks": {"default": {"name": "erp_default", "ipam": {}}},
            "volumes": {"sites": {"name": "erp_sites"}, "db-data": {"name": "erp_db-data"},
                        "redis-queue-data": {"name": "erp_redis-queue-data"}},
            "x-customizable-image": {"image": "x"}
        })
    }

    fn options(nodes: usize) -> StackOptions {
        StackOptions {
            project: "erp".into(),
            nodes,
            sites_volume: "sites".into(),
            scheduler: "scheduler".into(),
            ops: None,
        }
    }

    #[test]
    fn compose_idioms_become_a_stack_file_swarm_takes() {
        let stack = stack_file(&rendered(), &options(1)).unwrap();
        let f = &stack.file;
        assert_eq!(f["version"], "3.8");
        assert!(f.get("name").is_none() && f.get("x-customizable-image").is_none());
        assert_eq!(f["volumes"]["sites"], json!({}), "the default name goes: the stack prefixes it the same way");
        assert_eq!(f["networks"]["default"], json!({}));
        let backend = &f["services"]["backend"];
        for gone in ["pull_policy", "platform", "restart", "depends_on", "command", "entrypoint"] {
            assert!(backend.get(gone).is_none(), "backend keeps {gone}: {backend}");
        }
        assert_eq!(backend["deploy"]["restart_policy"]["condition"], "any");
        assert_eq!(
            backend["deploy"]["placement"]["constraints"],
            json!(["node.platform.os == linux", "node.platform.arch == x86_64"])
        );
        assert_eq!(backend["volumes"][0], json!({"type": "volume", "source": "sites", "target": SITES_TARGET}));
        // The configurator runs once per deploy.
        assert_eq!(stack.jobs, ["configurator"]);
        let configurator = &f["services"]["configurator"];
        assert_eq!(configurator["deploy"]["replicas"], 1);
        assert_eq!(configurator["deploy"]["restart_policy"], json!({"condition": "on-failure"}));
        assert_eq!(configurator["deploy"]["labels"][ONE_SHOT_LABEL], "true");
        assert!(
            stack.notes.iter().any(|n| n == "backend: restart unless-stopped → restart_policy any"),
            "{:?}",
            stack.notes
        );
        assert_eq!(notes_by_service(&stack)["configurator"].len(), 4, "{:?}", stack.notes);
    }

    #[test]
    fn the_ops_service_takes_the_backend_s_image_and_sleeps_on_benchform_s_node() {
        let with_ops =
            StackOptions { ops: Some(Ops { backend: "backend".into(), node: "n0de1d".into() }), ..options(1) };
        let stack = stack_file(&rendered(), &with_ops).unwrap();
        let ops = &stack.file["services"][OPS_SERVICE];
        let backend = &stack.file["services"]["backend"];
        assert_eq!(ops["image"], backend["image"]);
        assert_eq!(ops["volumes"], backend["volumes"]);
        assert_eq!(ops["entrypoint"], json!(["sleep", "infinity"]));
        assert!(ops.get("command").is_none() && ops.get("ports").is_none() && ops.get("healthcheck").is_none());
        assert_eq!(ops["deploy"]["replicas"], 1);
        assert_eq!(ops["deploy"]["placement"]["constraints"], json!(["node.id == n0de1d"]));

        let mut taken = rendered();
        taken["services"][OPS_SERVICE] = json!({"image": "x"});
        let problems = stack_file(&taken, &with_ops).unwrap_err();
        assert_eq!(problems[0].at, OPS_SERVICE, "{problems:?}");
        let no_backend = StackOptions { ops: Some(Ops { backend: "web".into(), node: "n".into() }), ..options(1) };
        assert_eq!(stack_file(&rendered(), &no_backend).unwrap_err()[0].at, "web");
    }

    #[test]
    fn every_service_carries_the_hash_of_its_own_configuration() {
        let hash = |r: &Value| {
            let stack = stack_file(r, &options(1)).unwrap();
            let services = stack.file["services"].as_object().unwrap().clone();
            services
                .into_iter()
                .map(|(name, s)| {
                    let hash = s["deploy"]["labels"][CONFIG_HASH_LABEL].as_str().unwrap().to_string();
                    // The containers carry it too: tasks of an older configuration are told apart.
                    assert_eq!(s["labels"][CONFIG_HASH_LABEL].as_str(), Some(hash.as_str()), "{name}");
                    (name, hash)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let before = hash(&rendered());
        assert_eq!(before, hash(&rendered()), "the same configuration, the same hashes");
        assert!(before.values().all(|h| h.len() == 64), "{before:?}");
        let mut bumped = rendered();
        bumped["services"]["backend"]["image"] = json!("registry.example.com/acme/erpnext:bf1-y");
        let after = hash(&bumped);
        let changed: Vec<&String> = before.keys().filter(|s| before[*s] != after[*s]).collect();
        assert_eq!(changed, ["backend"]);
        // Labels a service has as a list keep their entries, and the hash joins them.
        let mut listed = rendered();
        listed["services"]["backend"]["labels"] = json!(["team=erp"]);
        let stack = stack_file(&listed, &options(1)).unwrap();
        let labels = stack.file["services"]["backend"]["labels"].as_array().unwrap().clone();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert!(labels[1].as_str().unwrap().starts_with(&format!("{CONFIG_HASH_LABEL}=")));
        // A CPU count as compose v2 writes it becomes the string the stack format takes.
        let mut limited = rendered();
        limited["services"]["backend"]["deploy"] = json!({"resources": {"limits": {"cpus": 1.5}}});
        let stack = stack_file(&limited, &options(1)).unwrap();
        assert_eq!(stack.file["services"]["backend"]["deploy"]["resources"]["limits"]["cpus"], "1.5");
    }

    #[test]
    fn on_several_nodes_node_local_data_is_refused_with_its_fix() {
        let problems = stack_file(&rendered(), &options(3)).unwrap_err();
        let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(at, ["db", "redis-queue", "volumes.sites"], "{problems:#?}");
        assert!(problems[2].what.contains("each of the 3 nodes would have its own"));
        assert!(problems[2].fix.contains("type: nfs"));

        // Shared sites, the database pinned by hostname, redis-queue by a label: accepted.
        let mut r = rendered();
        r["volumes"]["sites"] = json!({"driver_opts": {"type": "none", "o": "bind", "device": "/srv/shared/sites"}});
        r["services"]["db"]["deploy"] = json!({"placement": {"constraints": ["node.hostname == db-1"]}});
        r["services"]["redis-queue"]["deploy"] = json!({"placement": {"constraints": ["node.labels.redis == yes"]}});
        let stack = stack_file(&r, &options(3)).unwrap();
        assert_eq!(
            stack.file["services"]["db"]["deploy"]["placement"]["constraints"],
            json!(["node.hostname == db-1"])
        );
        // Pinned but two replicas: still two copies of the data.
        r["services"]["db"]["deploy"]["replicas"] = json!(2);
        assert_eq!(stack_file(&r, &options(3)).unwrap_err()[0].at, "db");
        // One node: nothing can move.
        assert!(stack_file(&rendered(), &options(1)).is_ok());
    }

    #[test]
    fn ports_restart_counts_and_unknown_keys() {
        let mut r = rendered();
        r["services"]["frontend"] = json!({
            "image": "x", "restart": "on-failure:5",
            "ports": [{"mode": "ingress", "target": 8080, "published": "8080", "protocol": "tcp", "app_protocol": "http"}]
        });
        let stack = stack_file(&r, &options(1)).unwrap();
        let frontend = &stack.file["services"]["frontend"];
        assert_eq!(
            frontend["ports"][0],
            json!({"mode": "ingress", "target": 8080, "published": 8080, "protocol": "tcp"})
        );
        assert_eq!(frontend["deploy"]["restart_policy"], json!({"condition": "on-failure", "max_attempts": 5}));
        // `restart: no` (RESTART_POLICY=no) is a policy, not a one-shot.
        r["services"]["backend"]["restart"] = json!("no");
        let stack = stack_file(&r, &options(1)).unwrap();
        assert_eq!(stack.file["services"]["backend"]["deploy"]["restart_policy"], json!({"condition": "none"}));
        assert_eq!(stack.jobs, ["configurator"]);
        // What a stack file cannot say is refused, each with its service.
        r["services"]["frontend"]["ports"][0]["published"] = json!("8080-8081");
        r["services"]["frontend"]["ports"][0]["host_ip"] = json!("127.0.0.1");
        r["services"]["backend"]["mem_swappiness"] = json!(0);
        r["services"]["configurator"]["deploy"] = json!({"replicas": 2});
        let problems = stack_file(&r, &options(1)).unwrap_err();
        let whats: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.at, p.what)).collect();
        assert_eq!(whats.len(), 4, "{whats:#?}");
        assert!(whats.iter().any(|w| w.starts_with("backend: sets `mem_swappiness`")), "{whats:#?}");
        assert!(whats.iter().any(|w| w.contains("port range `8080-8081`")), "{whats:#?}");
        assert!(whats.iter().any(|w| w.contains("one host address")), "{whats:#?}");
        assert!(whats.iter().any(|w| w.starts_with("configurator: other services wait")), "{whats:#?}");
    }

    #[test]
    fn the_scheduler_runs_once() {
        for deploy in [json!({"replicas": 2}), json!({"mode": "global"})] {
            let mut r = rendered();
            r["services"]["scheduler"]["deploy"] = deploy;
            let problems = stack_file(&r, &options(1)).unwrap_err();
            assert_eq!(problems.len(), 1);
            assert!(problems[0].what.contains("every scheduled job twice"), "{problems:?}");
        }
    }
}
