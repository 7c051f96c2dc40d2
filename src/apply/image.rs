//! The image steps: build (BuildKit, the app list as a secret), verify (apps at their locked
//! commits, no token anywhere), push.

use std::collections::BTreeMap;

use benchform_core::verify;
use benchform_docker::TagState;
use benchform_docker::build::{self, BuildSpec};

use super::*;
use crate::observe::LABEL_PROJECT;

/// Why a base image is missing, with where the Containerfile names it.
pub(crate) fn missing_base(
    base: &benchform_core::containerfile::Base,
    manifest: &benchform_manifest::Manifest,
    cause: impl std::fmt::Display,
) -> String {
    let via = if base.pulled == base.source { String::new() } else { format!(" (through the alias {})", base.pulled) };
    format!(
        "the build starts FROM {}{via} ({}, line {}: `{}`), which the engine does not have and cannot pull: {cause}",
        base.source, manifest.image.containerfile, base.line, base.written
    )
}

/// The way out of a missing base image.
pub(crate) fn base_fix(base: &benchform_core::containerfile::Base, manifest: &benchform_manifest::Manifest) -> String {
    if base.written.contains(benchform_core::containerfile::BRANCH_ARG) && manifest.image.base_tag.is_none() {
        format!(
            "frappe_docker tags its base images by branch (version-15, version-16), while FRAPPE_BRANCH is frappe.ref \
             ({}): set image.base_tag to the branch of that release, e.g. `base_tag: version-15`",
            manifest.frappe.git_ref
        )
    } else {
        format!("build or pull {} into the engine, or correct image.base_tag / the Containerfile", base.source)
    }
}

impl Applier<'_> {
    pub(super) async fn build(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        if self.build_engine.image(&reference).await.map_err(|e| err(e, "check `docker info`"))?.is_some() {
            return Ok(Outcome::AlreadyDone(format!("the engine has {reference}")));
        }
        self.base_images().await?;
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
        build::build(&self.build_cli, &spec, &secrets, |line| {
            tracing::info!(target: "build", "{line}");
            self.note_line(StepKind::Build.as_str(), line);
        })
        .await
        .map_err(|e| err(e, "read the build output above (run with -v to stream it)"))?;
        Ok(Outcome::Done(format!("built {reference}")))
    }

    /// Make sure the engine has every image the build starts from, under the name the
    /// Containerfile pulls: pulled when missing, and aliased from `image.base_tag`'s tag. A
    /// missing base fails here, before the build, naming the image and the way out.
    async fn base_images(&self) -> Result<(), StepError> {
        for base in &self.p.bases {
            let present =
                self.build_engine.image(&base.source).await.map_err(|e| err(e, "check `docker info`"))?.is_some();
            if !present {
                build::pull(&self.build_cli, &base.source, |line| self.note_line(StepKind::Build.as_str(), line))
                    .await
                    .map_err(|e| err(missing_base(base, &self.p.manifest, e), base_fix(base, &self.p.manifest)))?;
            }
            if base.pulled != base.source {
                self.build_engine.tag(&base.source, &base.pulled).await.map_err(|e| err(e, "check `docker info`"))?;
            }
        }
        Ok(())
    }

    pub(super) async fn verify(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        let contents =
            build::image_contents(&self.build_cli, &reference).await.map_err(|e| err(e, "check `docker info`"))?;
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
        let _ = self.build_cli.output(&["rmi", &reference]).await;
        let detail = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Err(err(
            detail,
            "the image was removed; fix the cause (moved tag, leaked token), relock if needed, and apply again",
        ))
    }

    pub(super) async fn push(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        if let Ok(TagState::Present { digest }) = self.build_engine.registry_tag(&reference).await {
            return Ok(Outcome::AlreadyDone(format!("the registry has it ({digest})")));
        }
        let digest = build::push(&self.build_cli, &reference, &[], |line| tracing::info!(target: "push", "{line}"))
            .await
            .map_err(|e| err(e, "check `docker login` for the registry (benchform uses the Docker config file)"))?;
        Ok(Outcome::Done(format!("pushed {}", digest.unwrap_or_default())))
    }
}
