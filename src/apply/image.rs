//! The image steps: build (BuildKit, the app list as a secret), verify (apps at their locked
//! commits, no token anywhere), push.

use std::collections::BTreeMap;

use benchform_core::verify;
use benchform_docker::TagState;
use benchform_docker::build::{self, BuildSpec};

use super::*;
use crate::observe::LABEL_PROJECT;

impl Applier<'_> {
    pub(super) async fn build(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        if self.engine.image(&reference).await.map_err(|e| err(e, "check `docker info`"))?.is_some() {
            return Ok(Outcome::AlreadyDone(format!("the engine has {reference}")));
        }
        let tokens = self.tokens();
        let mut apps: Vec<serde_json::Value> = Vec::new();
        for a in &self.p.manifest.apps {
            let url = match tokens.get(&a.name) {
                Some((user, token)) => benchform_core::credentials::with_token(&a.repo, user, token)
                    .map_err(|e| err(e, "write the app's repo as https://host/org/repo"))?,
                None => a.repo.clone(),
            };
            apps.push(serde_json::json!({"url": url, "branch": a.git_ref}));
        }
        // The secret lives in memory only (a memfd this process owns, read by the Docker CLI
        // through /proc): no file on disk that a crash could leave behind with the token in it.
        let memfd = SecretFile::new(serde_json::Value::Array(apps).to_string().as_bytes())
            .map_err(|e| err(format!("cannot hold the build secret in memory: {e}"), "check that /proc is mounted"))?;
        let secret = memfd.path();
        let labels = BTreeMap::from([
            (LABEL_PROJECT.to_string(), self.p.manifest.project.clone()),
            ("org.benchform.lock".to_string(), benchform_core::tag::sha256_hex(&self.p.lock_bytes)),
        ]);
        let spec = BuildSpec {
            context: &self.p.paths.context,
            containerfile: &self.p.paths.containerfile,
            reference: &reference,
            build_args: &self.p.image.build_args,
            labels: &labels,
            apps_json: &secret,
            network: self.p.manifest.image.build_network.as_deref(),
            no_cache: false,
        };
        let secrets: Vec<String> = tokens.values().map(|(_, t)| t.clone()).collect();
        build::build(&self.cli, &spec, &secrets, |line| {
            tracing::info!(target: "build", "{line}");
            self.note_line(StepKind::Build.as_str(), line);
        })
        .await
        .map_err(|e| err(e, "read the build output above (run with -v to stream it)"))?;
        Ok(Outcome::Done(format!("built {reference}")))
    }

    pub(super) async fn verify(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        let contents = build::image_contents(&self.cli, &reference).await.map_err(|e| err(e, "check `docker info`"))?;
        let names: Vec<String> = self.p.manifest.sources().iter().map(|s| s.name.to_string()).collect();
        let mut problems = verify::check_apps(&contents.apps_json, &contents.apps_dir, &names, &self.p.lock);
        let secrets: Vec<String> = self.tokens().values().map(|(_, t)| t.clone()).collect();
        let places = [
            ("history", contents.history.as_str()),
            ("metadata", contents.metadata.as_str()),
            ("logs/", contents.logs.as_str()),
        ];
        problems.extend(verify::find_secrets(&places, &secrets));
        if problems.is_empty() {
            return Ok(Outcome::Done(format!("{} apps at their locked commits; no secret found", names.len())));
        }
        // A bad image must not be deployed or pushed by a later run.
        let _ = tokio::process::Command::new(&self.cli.program).args(["rmi", &reference]).output().await;
        let detail = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Err(err(
            detail,
            "the image was removed; fix the cause (moved tag, leaked token), relock if needed, and apply again",
        ))
    }

    pub(super) async fn push(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        if let Ok(TagState::Present { digest }) = self.engine.registry_tag(&reference).await {
            return Ok(Outcome::AlreadyDone(format!("the registry has it ({digest})")));
        }
        let digest = build::push(&self.cli, &reference, &[], |line| tracing::info!(target: "push", "{line}"))
            .await
            .map_err(|e| err(e, "check `docker login` for the registry (benchform uses the Docker config file)"))?;
        Ok(Outcome::Done(format!("pushed {}", digest.unwrap_or_default())))
    }
}
