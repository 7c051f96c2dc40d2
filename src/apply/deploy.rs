//! The deploy step (compose up, the health gate, redeploying the previous image when it fails)
//! and refresh-assets.

use std::time::Duration;

use super::*;
use crate::observe::{self};

impl Applier<'_> {
    /// `compose up` of exactly the plan's `services` (compose starts what they depend on with
    /// them, and removes orphans: the plan names both), then the health gate.
    pub(super) async fn deploy(&self, services: &[String]) -> Result<Outcome, StepError> {
        // Until `compose up`, nothing has changed.
        let untouched = |e: StepError| StepError { touched: false, ..e };
        self.refuse_migrator().await.map_err(untouched)?;
        // The canaries passed: their one-off container gives way to the new backend.
        self.drop_canary().await;
        let backend = self.p.manifest.deploy.backend_service.clone();
        let reference = self.reference();
        let previous = self.backend_image().await.map_err(untouched)?.filter(|image| *image != reference);
        self.forget_backend().await;
        let stack = self.roll_out(&self.env(), services).await?;
        // The new backend must come up and then answer for every site; a backend that never
        // comes up (an app that fails to import crash-loops gunicorn) fails the gate too.
        let why = match self.wait_until_up(&reference, self.options.health_timeout, stack.as_ref()).await {
            Err(e) => format!("health gate: {}", e.detail),
            Ok(()) => match self.health_gate().await {
                Ok(answered) => {
                    self.gate_passed.store(true, std::sync::atomic::Ordering::SeqCst);
                    let gate = match answered {
                        0 => "no site to ping yet".to_string(),
                        n => format!("{n} site(s) answer /api/method/ping as they should"),
                    };
                    return Ok(Outcome::Done(format!("{backend} runs {}; {gate}", self.p.desired.tag)));
                }
                Err(why) => why,
            },
        };
        if self.migrated.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(err(
                format!("{why}; sites were migrated in this run, so the new image stays"),
                format!("look at the backend's logs ({})", self.backend_logs()),
            ));
        }
        let Some(previous) = previous else {
            return Err(err(
                format!("{why}; there is no previous image to go back to"),
                format!("look at the backend's logs ({}), fix the image, and apply again", self.backend_logs()),
            ));
        };
        if previous.starts_with("sha256:") {
            return Err(err(
                format!("{why}; the previous image ({previous}) has no tag to redeploy"),
                format!("look at the backend's logs ({}), fix the image, and apply again", self.backend_logs()),
            ));
        }
        let (repository, tag) = split_reference(&previous);
        let previous = format!("{repository}:{tag}");
        let env = observe::compose_env_for(repository, tag, self.compose.flavour);
        self.forget_backend().await;
        let back = match self.roll_out(&env, services).await {
            Ok(stack) => self.wait_until_up(&previous, DEPLOY_WAIT, stack.as_ref()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = back {
            return Err(err(
                format!("{why}; redeploying the previous image {previous} failed too: {}", e.detail),
                format!("look at the backend's logs ({}), then apply again", self.backend_logs()),
            ));
        }
        // Going back is an image change too: the new image's bundle names may be cached.
        let assets = match self.refresh_assets().await {
            Ok(_) => String::new(),
            Err(e) => format!(" (dropping assets_json failed: {}; delete it by hand)", e.detail),
        };
        Err(StepError {
            rolled_back: true,
            ..err(
                format!("{why}; redeployed the previous image {previous}{assets}"),
                "look at the backend's logs on the new image, fix it, and apply again",
            )
        })
    }

    /// The command that shows the backend's logs, for a fix.
    pub(super) fn backend_logs(&self) -> String {
        let backend = &self.p.manifest.deploy.backend_service;
        match self.swarm {
            None => format!("`docker compose logs {backend}`"),
            Some(_) => format!("`docker service logs {}_{backend}` on the manager", self.p.manifest.project),
        }
    }

    /// The image the backend runs now (compose: its container's; swarm: its service's).
    async fn backend_image(&self) -> Result<Option<String>, StepError> {
        let backend = &self.p.manifest.deploy.backend_service;
        let project = &self.p.manifest.project;
        let image = match &self.swarm {
            None => self
                .engine
                .project_containers(project)
                .await
                .map_err(|e| err(e, "check `docker info`"))?
                .into_iter()
                .find(|c| c.service == *backend && !c.oneoff)
                .map(|c| c.image),
            Some(_) => self
                .engine
                .stack_services(project)
                .await
                .map_err(|e| err(e, "check `docker info` on the manager"))?
                .into_iter()
                .find(|s| s.name == *backend)
                .map(|s| s.image),
        };
        Ok(image)
    }

    /// Bring the deployment to the compose files with `env`: `compose up` of `services`, or on a
    /// swarm `docker stack deploy` of the whole stack (swarm updates only the services whose
    /// configuration changed: those the plan names), which is returned for the wait.
    async fn roll_out(
        &self,
        env: &[(String, String)],
        services: &[String],
    ) -> Result<Option<benchform_core::swarm::Stack>, StepError> {
        let Some(manager) = &self.swarm else {
            self.compose
                .up(env, false, services)
                .await
                .map_err(|e| err(e, "fix the compose files or the engine, then apply again"))?;
            return Ok(None);
        };
        let rendered =
            self.compose.rendered(env).await.map_err(|e| err(e, "fix the compose files, then apply again"))?;
        let nodes = self.engine.swarm_nodes().await.map_err(|e| err(e, "check `docker node ls` on the manager"))?;
        let stack =
            crate::swarm::stack(&rendered, &self.p.manifest, manager, nodes.len()).map_err(|e| err(e.detail, e.fix))?;
        benchform_docker::swarm::deploy_stack(&self.cli, &self.p.manifest.project, &stack.file)
            .await
            .map_err(|e| err(e, "fix the compose files or the swarm, then apply again"))?;
        Ok(Some(stack))
    }

    pub(super) async fn refresh_assets(&self) -> Result<Outcome, StepError> {
        if self.swarm.is_some() {
            return self.refresh_assets_on_swarm().await;
        }
        let redis = self
            .engine
            .running_container(&self.p.manifest.project, "redis-cache")
            .await
            .map_err(|e| err(e, "check `docker info`"))?
            .map(|c| c.id);
        let Some(redis) = redis else {
            return Ok(Outcome::Done(
                "no redis-cache service in the project: delete assets_json in your redis-cache yourself".into(),
            ));
        };
        let argv = vec!["redis-cli".to_string(), "DEL".to_string(), "assets_json".to_string()];
        let spec = benchform_docker::ExecSpec::plain(&redis, &argv, Some(Duration::from_secs(30)));
        let out = self.engine.exec(&spec).await.map_err(|e| err(e, "check the redis-cache container"))?;
        if out.exit_code != 0 {
            return Err(err(
                format!("redis-cli DEL assets_json exited {}", out.exit_code),
                "check the redis-cache container",
            ));
        }
        Ok(Outcome::Done("assets_json dropped from redis-cache".into()))
    }
}

impl Applier<'_> {
    /// On a swarm, redis-cache may run on any node, out of reach of this engine's execs: a job on
    /// the stack's network runs `redis-cli -h redis-cache DEL assets_json` with redis-cache's own
    /// image, wherever swarm puts it.
    async fn refresh_assets_on_swarm(&self) -> Result<Outcome, StepError> {
        let project = &self.p.manifest.project;
        let rendered =
            self.compose.rendered(&self.env()).await.map_err(|e| err(e, "fix the compose files, then apply again"))?;
        let redis = &rendered["services"]["redis-cache"];
        let Some(image) = redis["image"].as_str() else {
            return Ok(Outcome::Done(
                "no redis-cache service in the stack: delete assets_json in your redis-cache yourself".into(),
            ));
        };
        // A network's name on the swarm: the one the files give it (external ones), else the
        // stack's `<project>_<network>`.
        let name_of = |n: &str| rendered["networks"][n]["name"].as_str().map_or(format!("{project}_{n}"), String::from);
        let networks: Vec<String> = match redis["networks"].as_object() {
            Some(nets) if !nets.is_empty() => nets.keys().map(|n| name_of(n)).collect(),
            _ => vec![name_of("default")],
        };
        let argv: Vec<String> = ["redis-cli", "-h", "redis-cache", "DEL", "assets_json"].map(String::from).to_vec();
        let job = benchform_docker::swarm::Job {
            name: format!("{project}_benchform-assets"),
            image,
            argv: &argv,
            networks,
            labels: [(observe::LABEL_PROJECT.to_string(), project.clone())].into(),
        };
        let ended = self
            .engine
            .run_job(&job, Duration::from_secs(120))
            .await
            .map_err(|e| err(e, "check `docker service ls` on the manager"))?;
        match ended {
            Ok(0) => Ok(Outcome::Done("assets_json dropped from redis-cache (a swarm job)".into())),
            Ok(code) => Err(err(
                format!("redis-cli DEL assets_json exited {code} (a swarm job on the stack's network)"),
                "check the redis-cache service (`docker service ps`)",
            )),
            Err(why) => Err(err(
                format!("the swarm job that drops assets_json did not run: {why}"),
                "check that every node can get redis-cache's image (`docker service ps`)",
            )),
        }
    }
}

/// `repo:tag` → (`repo`, `tag`); a reference without a tag means `latest`.
pub(super) fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}
