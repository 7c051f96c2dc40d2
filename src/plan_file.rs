//! The plan as JSON (`plan --format json`, `plan -o FILE`, `show`, `apply FILE`): the wire
//! document, kept apart from the core's types, and the one reader of saved plans.

use std::collections::BTreeMap;

use benchform_core::fingerprint::WorldFingerprint;
use benchform_core::plan::{self, Plan, PlanOptions, Step};
use benchform_core::schedule::Schedule;
use benchform_core::status;
use serde::{Deserialize, Serialize};

/// The JSON plan's format version. 2 added the plan inputs and the digest; a saved plan of
/// format 1 is refused (it cannot be re-planned with the inputs it was made with).
pub const FORMAT_VERSION: u32 = 2;

/// A saved plan larger than this is not a plan benchform wrote (a plan of 1,000 sites is ~1 MB).
const MAX_PLAN_BYTES: u64 = 32 * 1024 * 1024;

/// A plan as JSON: the wire form, kept apart from the core's types. `schema/plan.schema.json`
/// is generated from it. A saved plan (`plan -o FILE`) is the same document with `fingerprint`
/// and `digest`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "benchform plan")]
pub struct PlanDocument {
    /// Version of this format; only `2` is read.
    pub format_version: u32,
    pub project: String,
    /// The image the plan deploys.
    pub image: ImageRef,
    /// The choices the plan was made with (`plan --allow-downgrade`, `--parallelism`). `apply
    /// FILE` re-plans with exactly these and takes no such flags of its own.
    pub inputs: PlanInputs,
    /// In the order apply runs them with one site at a time; `depends_on` names earlier steps'
    /// ids.
    pub steps: Vec<Step>,
    /// How apply runs the steps: phase after phase — a step that concerns no single site alone,
    /// or each site's steps in order with `parallelism` sites at a time — and each site's time
    /// out of service. Derived from `steps` and `inputs.parallelism`; apply derives it again from
    /// the planner's steps and never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Sites of the manifest no step touches because they cannot be planned as observed (a
    /// damaged site, or sites that cannot be read), with what was seen and the fix.
    pub blocked: Vec<plan::Blocked>,
    /// Changes made outside benchform.
    pub drift: Vec<status::Drift>,
    /// Steps per kind.
    pub summary: BTreeMap<String, usize>,
    /// Saved plans only: what the plan was computed from, checked by apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<WorldFingerprint>,
    /// Saved plans only: SHA-256 of this document without `digest` (steps, inputs, fingerprint
    /// with the manifest and lock digests), so an edited file is refused. Not a signature: apply
    /// also re-plans and refuses any step the planner would not produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An image reference, split.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub repository: String,
    pub tag: String,
}

/// The flags that change a plan's steps or their schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInputs {
    /// `--allow-downgrade`.
    pub allow_downgrade: bool,
    /// `--parallelism`: how many sites migrate at the same time.
    pub parallelism: u16,
    /// `--release-maintenance SITE`: sites in maintenance mode set outside benchform that this
    /// plan puts back in service. Left out when empty, so plans without it read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_maintenance: Vec<String>,
    /// `--allow-new-project`: start the project although the same compose files run under
    /// another name. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_new_project: bool,
    /// `--allow-restore`: bring sites migrated to newer code back to the backup benchform took
    /// before that migrate (a rollback by revert, data included). Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_restore: bool,
}

impl Default for PlanInputs {
    fn default() -> PlanInputs {
        PlanInputs {
            allow_downgrade: false,
            parallelism: 1,
            release_maintenance: Vec::new(),
            allow_new_project: false,
            allow_restore: false,
        }
    }
}

impl PlanInputs {
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            allow_downgrade: self.allow_downgrade,
            release_maintenance: self.release_maintenance.clone(),
            allow_new_project: self.allow_new_project,
            allow_restore: self.allow_restore,
        }
    }
}

pub fn document(p: &Plan, inputs: &PlanInputs, fingerprint: Option<WorldFingerprint>) -> PlanDocument {
    let mut doc = PlanDocument {
        format_version: FORMAT_VERSION,
        project: p.project.clone(),
        image: ImageRef { repository: p.repository.clone(), tag: p.tag.clone() },
        inputs: inputs.clone(),
        steps: p.steps.clone(),
        schedule: Some(Schedule::of(&p.steps, inputs.parallelism)),
        blocked: p.blocked.clone(),
        drift: p.drift.clone(),
        summary: p.summary().into_iter().map(|(k, n)| (k.as_str().to_string(), n)).collect(),
        fingerprint,
        digest: None,
    };
    if doc.fingerprint.is_some() {
        doc.digest = Some(doc.computed_digest());
    }
    doc
}

impl PlanDocument {
    /// Back to the core's plan, for rendering.
    pub fn plan(&self) -> Plan {
        Plan {
            project: self.project.clone(),
            repository: self.image.repository.clone(),
            tag: self.image.tag.clone(),
            steps: self.steps.clone(),
            blocked: self.blocked.clone(),
            drift: self.drift.clone(),
        }
    }

    /// SHA-256 of the document's JSON without `digest` (field order is the struct's, so the
    /// same document always hashes the same whatever the file's layout).
    fn computed_digest(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("digest");
        }
        benchform_core::tag::sha256_hex(v.to_string().as_bytes())
    }
}

/// Why a plan file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot read {file}: {detail}")]
    Read { file: String, detail: String },
    #[error("{file} is larger than {MAX_PLAN_BYTES} bytes: not a plan benchform saved")]
    TooLarge { file: String },
    #[error("{file} is not a benchform plan: {detail}")]
    NotAPlan { file: String, detail: String },
    #[error("{file} has plan format {found}; this benchform reads format {FORMAT_VERSION}")]
    Version { file: String, found: String },
    #[error("{file} was changed after it was saved: its digest does not match its content")]
    Edited { file: String },
    #[error("{file}: {detail}")]
    Invalid { file: String, detail: String },
}

impl PlanFileError {
    pub fn fix(&self) -> &'static str {
        match self {
            PlanFileError::Read { .. } => "name a plan saved with `benchform plan -o FILE`",
            PlanFileError::Version { .. } | PlanFileError::Edited { .. } | PlanFileError::Invalid { .. } => {
                "make the plan again with this benchform (`benchform plan -o FILE`), review it, and apply that file \
                 unchanged"
            }
            PlanFileError::TooLarge { .. } | PlanFileError::NotAPlan { .. } => {
                "save a plan with `benchform plan -o FILE` and pass that file"
            }
        }
    }
}

/// Read a plan file (`plan -o`, or `plan --format json` output), check its format, digest and
/// every value in it, before anything of it is shown or used.
pub fn read_saved_plan(path: &std::path::Path) -> Result<PlanDocument, PlanFileError> {
    use std::io::Read;
    let file = crate::output::escape(&path.display().to_string());
    let read = |e: std::io::Error| PlanFileError::Read { file: file.clone(), detail: e.to_string() };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(read)?.take(MAX_PLAN_BYTES + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        return Err(PlanFileError::TooLarge { file });
    }
    let not_a_plan = |detail: String| PlanFileError::NotAPlan { file: file.clone(), detail };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| not_a_plan(e.to_string()))?;
    match value.get("format_version") {
        Some(v) if v.as_u64() == Some(u64::from(FORMAT_VERSION)) => {}
        Some(v) => {
            return Err(PlanFileError::Version { file, found: crate::output::escape(&v.to_string()) });
        }
        None => return Err(not_a_plan("it has no format_version".to_string())),
    }
    let doc: PlanDocument = serde_json::from_value(value).map_err(|e| not_a_plan(e.to_string()))?;
    if let Some(digest) = &doc.digest
        && *digest != doc.computed_digest()
    {
        return Err(PlanFileError::Edited { file });
    }
    if doc.fingerprint.is_some() && doc.digest.is_none() {
        return Err(PlanFileError::Edited { file });
    }
    doc.check().map_err(|detail| PlanFileError::Invalid { file, detail: crate::output::escape(&detail) })?;
    Ok(doc)
}

impl PlanDocument {
    /// Every value checked as the manifest's would be: names, ids, dependencies, counts.
    fn check(&self) -> Result<(), String> {
        use benchform_manifest::names;
        if !names::is_project_name(&self.project) {
            return Err(format!("project `{}` is not a valid project name", self.project));
        }
        if !(1..=64).contains(&self.inputs.parallelism) {
            return Err(format!("inputs.parallelism {} is outside 1..=64", self.inputs.parallelism));
        }
        if let Some(site) = self.inputs.release_maintenance.iter().find(|s| names::site_name_problem(s).is_some()) {
            return Err(format!("inputs.release_maintenance: `{site}` is not a valid site name"));
        }
        if let Some(b) = self.blocked.iter().find(|b| names::site_name_problem(&b.site).is_some()) {
            return Err(format!("blocked site `{}` is not a valid site name", b.site));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.steps.iter().enumerate() {
            if let Some(site) = &s.site
                && let Some(why) = names::site_name_problem(site)
            {
                return Err(format!("steps[{i}]: site `{site}` is not a valid site name: {why}"));
            }
            if let Some(app) = &s.app
                && !names::is_identifier(app)
            {
                return Err(format!("steps[{i}]: app `{app}` is not a valid app name"));
            }
            if let Some(c) = s.service_changes.iter().find(|c| !names::is_service_name(&c.service)) {
                return Err(format!("steps[{i}]: service `{}` is not a valid service name", c.service));
            }
            if let Some(service) = s.services.iter().find(|x| !names::is_service_name(x)) {
                return Err(format!("steps[{i}]: service `{service}` is not a valid service name"));
            }
            if s.id != plan::step_id(s.kind, s.site.as_deref(), s.app.as_deref()) {
                return Err(format!("steps[{i}]: id `{}` does not match its kind, site and app", s.id));
            }
            if let Some(dep) = s.depends_on.iter().find(|d| !seen.contains(d.as_str())) {
                return Err(format!("steps[{i}] ({}) depends on `{dep}`, which is not an earlier step", s.id));
            }
            if !seen.insert(s.id.as_str()) {
                return Err(format!("steps[{i}]: `{}` appears twice", s.id));
            }
        }
        Ok(())
    }
}

/// The fuzz harness for saved plans: mutated plan files (values replaced by hostile ones, keys
/// dropped or added, steps duplicated, numbers changed, bytes flipped) are read without a panic,
/// and any file that is accepted holds only values that pass the manifest's rules. CI runs the
/// default number of cases; `PROPTEST_CASES=20000 cargo test --release --bin benchform fuzz`
/// runs longer (docs/security.md).
#[cfg(test)]
mod fuzz {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use benchform_core::plan::StepKind;
    use proptest::prelude::*;

    const HOSTILE: &[&str] = &[
        "../../etc",
        "a.localhost",
        "evil.localhost",
        "",
        "\u{1b}[2K",
        "x\ny",
        "uninstall-app",
        "-rf",
        "--force",
        "backup:../../x",
        "A.LOCALHOST",
        "erpnext",
        "frappe; rm -rf /",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.localhost",
    ];

    fn saved() -> serde_json::Value {
        let step = |kind: StepKind, site: Option<&str>, deps: &[&str]| Step {
            id: plan::step_id(kind, site, None),
            kind,
            site: site.map(str::to_string),
            app: None,
            reason: "r".into(),
            destructive: false,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            services: vec![],
            service_changes: vec![],
            preview: None,
            restore: None,
            canary: false,
        };
        let p = Plan {
            project: "acme".into(),
            repository: "127.0.0.1:5000/acme/erp".into(),
            tag: "bf1-x".into(),
            steps: vec![
                step(StepKind::MaintenanceOn, Some("a.localhost"), &[]),
                step(StepKind::Backup, Some("a.localhost"), &["maintenance-on:a.localhost"]),
                step(StepKind::Migrate, Some("a.localhost"), &["backup:a.localhost"]),
            ],
            blocked: vec![],
            drift: vec![],
        };
        let print = benchform_core::fingerprint::WorldFingerprint {
            manifest: "m".into(),
            lock: "l".into(),
            image: "i".into(),
            registry_digest: None,
            engine_image: None,
            services: BTreeMap::new(),
            sites_observed: true,
            sites: BTreeMap::new(),
        };
        serde_json::to_value(document(&p, &PlanInputs::default(), Some(print))).unwrap()
    }

    /// Every string or number inside `v`, by path, to pick one to change.
    fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| leaves(x, format!("{at}/{k}"), out)),
            serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| leaves(x, format!("{at}/{i}"), out)),
            _ => out.push(at),
        }
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Replace(usize, usize),
        Number(usize, i64),
        DuplicateStep(usize),
        DropKey(usize),
        Flip(usize, u8),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), 0..HOSTILE.len()).prop_map(|(i, h)| Edit::Replace(i, h)),
            (any::<usize>(), any::<i64>()).prop_map(|(i, n)| Edit::Number(i, n)),
            any::<usize>().prop_map(Edit::DuplicateStep),
            any::<usize>().prop_map(Edit::DropKey),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        ]
    }

    fn mutate(edits: &[Edit], reseal: bool) -> Vec<u8> {
        let mut v = saved();
        let mut flips = Vec::new();
        for e in edits {
            let mut paths = Vec::new();
            leaves(&v, String::new(), &mut paths);
            match *e {
                Edit::Replace(i, h) => {
                    if let Some(x) = v.pointer_mut(&paths[i % paths.len()]) {
                        *x = HOSTILE[h].into();
                    }
                }
                Edit::Number(i, n) => {
                    if let Some(x) = v.pointer_mut(&paths[i % paths.len()]) {
                        *x = n.into();
                    }
                }
                Edit::DuplicateStep(i) => {
                    let steps = v["steps"].as_array_mut().unwrap();
                    if !steps.is_empty() {
                        let s = steps[i % steps.len()].clone();
                        steps.push(s);
                    }
                }
                Edit::DropKey(i) => {
                    let path = &paths[i % paths.len()];
                    if let Some((parent, key)) = path.rsplit_once('/')
                        && let Some(serde_json::Value::Object(m)) = v.pointer_mut(parent)
                    {
                        m.remove(key);
                    }
                }
                Edit::Flip(i, b) => flips.push((i, b)),
            }
        }
        if reseal && let Some(o) = v.as_object_mut() {
            o.remove("digest");
            let digest = benchform_core::tag::sha256_hex(serde_json::Value::Object(o.clone()).to_string().as_bytes());
            o.insert("digest".into(), digest.into());
        }
        let mut bytes = serde_json::to_vec(&v).unwrap();
        for (i, b) in flips {
            let i = i % bytes.len();
            bytes[i] ^= b;
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_saved_plans_are_read_safely(edits in prop::collection::vec(edit(), 1..6), reseal in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("plan.json");
            std::fs::write(&file, mutate(&edits, reseal)).unwrap();
            if let Ok(doc) = read_saved_plan(&file) {
                // Accepted: it passed the digest and every value is one the manifest allows.
                prop_assert!(benchform_manifest::names::is_project_name(&doc.project));
                for s in &doc.steps {
                    prop_assert!(s.site.as_deref().is_none_or(|x| benchform_manifest::names::site_name_problem(x).is_none()));
                    prop_assert!(s.app.as_deref().is_none_or(benchform_manifest::names::is_identifier));
                    prop_assert_eq!(&s.id, &plan::step_id(s.kind, s.site.as_deref(), s.app.as_deref()));
                }
                prop_assert!(doc.digest.is_some());
            }
        }
    }

    #[test]
    fn the_unedited_plan_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.json");
        std::fs::write(&file, saved().to_string()).unwrap();
        assert!(read_saved_plan(&file).is_ok());
    }
}
