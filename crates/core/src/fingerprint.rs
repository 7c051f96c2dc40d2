//! The world fingerprint of a saved plan: everything the plan was computed from, so that apply can
//! refuse a plan whose world has moved on and say what moved (Terraform's stale-plan check, but
//! across the registry, the engine, compose and every site, not only benchform's own state).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::{Observed, TagObservation};
use crate::tag::sha256_hex;

/// What a plan was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorldFingerprint {
    /// SHA-256 of the manifest's bytes.
    pub manifest: String,
    /// SHA-256 of the lock's bytes.
    pub lock: String,
    /// The target image reference (`repository:tag`).
    pub image: String,
    /// The registry's digest for it, or null when absent.
    pub registry_digest: Option<String>,
    /// The engine's image id for it, or null when absent.
    pub engine_image: Option<String>,
    /// Each service's container: image and compose config hash.
    pub services: BTreeMap<String, ServicePrint>,
    /// Whether sites could be read at all (a backend was running).
    pub sites_observed: bool,
    pub sites: BTreeMap<String, SitePrint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServicePrint {
    pub image: String,
    pub state: String,
    pub config_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SitePrint {
    pub installed: Vec<String>,
    /// The recorded fingerprint (what the site was last migrated to by benchform).
    pub migrated_to: Option<String>,
    pub maintenance_mode: bool,
}

impl WorldFingerprint {
    pub fn of(manifest: &[u8], lock: &[u8], image: &str, observed: &Observed) -> WorldFingerprint {
        WorldFingerprint {
            manifest: sha256_hex(manifest),
            lock: sha256_hex(lock),
            image: image.to_string(),
            registry_digest: match &observed.registry {
                TagObservation::Present { digest } => Some(digest.clone()),
                TagObservation::Absent | TagObservation::Unused => None,
            },
            engine_image: observed.engine_image.clone(),
            services: observed
                .containers
                .iter()
                .map(|c| {
                    (
                        c.service.clone(),
                        ServicePrint {
                            image: c.image.clone(),
                            state: c.state.clone(),
                            config_hash: c.config_hash.clone(),
                        },
                    )
                })
                .collect(),
            sites_observed: observed.sites_observed,
            sites: observed
                .sites
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        SitePrint {
                            installed: s.installed.clone(),
                            migrated_to: s.record.as_ref().map(|r| r.fingerprint.clone()),
                            maintenance_mode: s.maintenance_mode,
                        },
                    )
                })
                .collect(),
        }
    }

    /// What changed from `self` (when the plan was made) to `now`, in words; empty if nothing.
    pub fn changes(&self, now: &WorldFingerprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.manifest != now.manifest {
            out.push("benchform.yaml changed since the plan was made".to_string());
        }
        if self.lock != now.lock {
            out.push("benchform.lock changed since the plan was made".to_string());
        }
        if self.image != now.image {
            out.push(format!("the target image is now {} (the plan deploys {})", now.image, self.image));
        }
        match (&self.registry_digest, &now.registry_digest) {
            (None, Some(d)) => out.push(format!("the registry now has {} ({d})", now.image)),
            (Some(_), None) => out.push(format!("the registry no longer has {}", now.image)),
            (Some(a), Some(b)) if a != b => out.push(format!("{} in the registry changed from {a} to {b}", now.image)),
            _ => {}
        }
        match (&self.engine_image, &now.engine_image) {
            (None, Some(_)) => out.push(format!("the engine now has {}", now.image)),
            (Some(_), None) => out.push(format!("the engine no longer has {}", now.image)),
            (Some(a), Some(b)) if a != b => {
                out.push(format!("{} in the engine is now another image ({b}, was {a})", now.image))
            }
            _ => {}
        }
        for (service, then) in &self.services {
            match now.services.get(service) {
                None => out.push(format!("service {service} is gone")),
                Some(n) => {
                    if n.image != then.image {
                        out.push(format!("service {service} now runs {} (was {})", n.image, then.image));
                    }
                    if n.config_hash != then.config_hash {
                        out.push(format!("service {service} was recreated with another configuration"));
                    }
                    if n.state != then.state {
                        out.push(format!("service {service} is now {} (was {})", n.state, then.state));
                    }
                }
            }
        }
        for service in now.services.keys().filter(|s| !self.services.contains_key(*s)) {
            out.push(format!("service {service} appeared"));
        }
        if self.sites_observed != now.sites_observed {
            out.push(
                if now.sites_observed {
                    "sites can now be read (a backend is running)"
                } else {
                    "sites can no longer be read (no backend running)"
                }
                .to_string(),
            );
        }
        for (site, then) in &self.sites {
            match now.sites.get(site) {
                None => out.push(format!("site {site} is gone")),
                Some(n) => {
                    for app in n.installed.iter().filter(|a| !then.installed.contains(a)) {
                        out.push(format!("site {site} gained app {app}"));
                    }
                    for app in then.installed.iter().filter(|a| !n.installed.contains(a)) {
                        out.push(format!("site {site} lost app {app}"));
                    }
                    if n.migrated_to != then.migrated_to {
                        out.push(format!("site {site} was migrated since the plan was made"));
                    }
                    if n.maintenance_mode != then.maintenance_mode {
                        out.push(format!(
                            "site {site} {} maintenance mode",
                            if n.maintenance_mode { "entered" } else { "left" }
                        ));
                    }
                }
            }
        }
        for site in now.sites.keys().filter(|s| !self.sites.contains_key(*s)) {
            out.push(format!("site {site} appeared"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print() -> WorldFingerprint {
        WorldFingerprint {
            manifest: "m".into(),
            lock: "l".into(),
            image: "r/p:bf1-x".into(),
            registry_digest: None,
            engine_image: None,
            services: BTreeMap::from([(
                "backend".to_string(),
                ServicePrint { image: "r/p:bf1-old".into(), state: "running".into(), config_hash: Some("h".into()) },
            )]),
            sites_observed: true,
            sites: BTreeMap::from([(
                "a.localhost".to_string(),
                SitePrint {
                    installed: vec!["frappe".into(), "erpnext".into()],
                    migrated_to: Some("f".into()),
                    maintenance_mode: false,
                },
            )]),
        }
    }

    fn change(f: impl FnOnce(&mut WorldFingerprint)) -> Vec<String> {
        let mut now = print();
        f(&mut now);
        print().changes(&now)
    }

    #[test]
    fn an_unchanged_world_has_no_changes() {
        assert!(print().changes(&print()).is_empty());
    }

    #[test]
    fn every_kind_of_change_is_named() {
        assert_eq!(change(|w| w.manifest = "m2".into()), ["benchform.yaml changed since the plan was made"]);
        assert_eq!(change(|w| w.lock = "l2".into()), ["benchform.lock changed since the plan was made"]);
        assert_eq!(
            change(|w| w.registry_digest = Some("sha256:1".into())),
            ["the registry now has r/p:bf1-x (sha256:1)"]
        );
        assert_eq!(change(|w| w.engine_image = Some("sha256:2".into())), ["the engine now has r/p:bf1-x"]);
        assert_eq!(
            change(|w| w.services.get_mut("backend").unwrap().image = "other:1".into()),
            ["service backend now runs other:1 (was r/p:bf1-old)"]
        );
        assert_eq!(
            change(|w| w.services.get_mut("backend").unwrap().config_hash = Some("h2".into())),
            ["service backend was recreated with another configuration"]
        );
        assert_eq!(change(|w| w.services.clear()), ["service backend is gone"]);
        assert_eq!(
            change(|w| w.sites.get_mut("a.localhost").unwrap().installed.push("hrms".into())),
            ["site a.localhost gained app hrms"]
        );
        assert_eq!(
            change(|w| {
                w.sites.get_mut("a.localhost").unwrap().installed.pop();
            }),
            ["site a.localhost lost app erpnext"]
        );
        assert_eq!(
            change(|w| w.sites.get_mut("a.localhost").unwrap().migrated_to = None),
            ["site a.localhost was migrated since the plan was made"]
        );
        assert_eq!(
            change(|w| w.sites.get_mut("a.localhost").unwrap().maintenance_mode = true),
            ["site a.localhost entered maintenance mode"]
        );
        assert_eq!(
            change(|w| {
                let s = w.sites.remove("a.localhost").unwrap();
                w.sites.insert("b.localhost".into(), s);
            }),
            ["site a.localhost is gone", "site b.localhost appeared"]
        );
    }
}
