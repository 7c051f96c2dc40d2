//! One apply at a time per project, held on the engine so that two operators on two machines
//! exclude each other: the lock is a Docker volume named after the project, labelled with its
//! holder. The engine creates a named volume once; a second create of the same name returns the
//! first one, with the first holder's labels — so whoever finds their own id on it holds the lock.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptions;

use crate::engine::{Engine, EngineError};

const LABEL_ID: &str = "org.benchform.lock.id";
const LABEL_HOLDER: &str = "org.benchform.lock.holder";
const LABEL_SINCE: &str = "org.benchform.lock.since";
const LABEL_PLAN: &str = "org.benchform.lock.plan";
const LABEL_HOST: &str = "org.benchform.lock.host";
const LABEL_PID: &str = "org.benchform.lock.pid";

/// Who holds a project's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub id: String,
    pub holder: String,
    pub since: String,
    pub plan: String,
    /// The holder's machine and process, to recognise a lock left by a dead process here.
    pub host: String,
    pub pid: u32,
}

impl LockInfo {
    /// Held by a process of this machine that no longer runs: a crashed apply.
    pub fn is_dead_here(&self, this_host: &str) -> bool {
        self.pid != 0 && self.host == this_host && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl LockInfo {
    /// Held by a process of this machine that still runs (or whose pid was reused).
    pub fn is_alive_here(&self, this_host: &str) -> bool {
        self.pid != 0 && self.host == this_host && std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// The lock volume carries no holder: made by hand or by another tool, not by an apply.
    pub fn is_unlabelled(&self) -> bool {
        self.id.is_empty()
    }
}

/// The lock volume's name for a project.
pub fn lock_volume(project: &str) -> String {
    format!("benchform-lock-{project}")
}

fn info(labels: &HashMap<String, String>) -> LockInfo {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    LockInfo {
        id: get(LABEL_ID),
        holder: get(LABEL_HOLDER),
        since: get(LABEL_SINCE),
        plan: get(LABEL_PLAN),
        host: get(LABEL_HOST),
        pid: get(LABEL_PID).parse().unwrap_or(0),
    }
}

impl Engine {
    /// Try to take the project's lock. `Ok(None)` when taken; `Ok(Some(holder))` when someone
    /// else holds it.
    pub async fn try_lock(&self, project: &str, mine: &LockInfo) -> Result<Option<LockInfo>, EngineError> {
        let labels = HashMap::from([
            (LABEL_ID.to_string(), mine.id.clone()),
            (LABEL_HOLDER.to_string(), mine.holder.clone()),
            (LABEL_SINCE.to_string(), mine.since.clone()),
            (LABEL_PLAN.to_string(), mine.plan.clone()),
            (LABEL_HOST.to_string(), mine.host.clone()),
            (LABEL_PID.to_string(), mine.pid.to_string()),
            ("org.benchform.project".to_string(), project.to_string()),
        ]);
        let request =
            VolumeCreateRequest { name: Some(lock_volume(project)), labels: Some(labels), ..Default::default() };
        let volume = self
            .docker()
            .create_volume(request)
            .await
            .map_err(|e| EngineError::Request { what: "create the lock volume".to_string(), detail: e.to_string() })?;
        let holder = info(&volume.labels);
        Ok(if holder.id == mine.id { None } else { Some(holder) })
    }

    /// Who holds the project's lock, if anyone.
    pub async fn lock_holder(&self, project: &str) -> Result<Option<LockInfo>, EngineError> {
        match self.docker().inspect_volume(&lock_volume(project)).await {
            Ok(v) => Ok(Some(info(&v.labels))),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(EngineError::Request { what: "inspect the lock volume".to_string(), detail: e.to_string() }),
        }
    }

    /// Release the lock if `id` holds it (a stale id releases nothing). True when released.
    pub async fn unlock(&self, project: &str, id: &str) -> Result<bool, EngineError> {
        match self.lock_holder(project).await? {
            Some(h) if h.id == id => {
                self.docker()
                    .remove_volume(&lock_volume(project), Some(RemoveVolumeOptions { force: true }))
                    .await
                    .map_err(|e| EngineError::Request {
                        what: "remove the lock volume".to_string(),
                        detail: e.to_string(),
                    })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
