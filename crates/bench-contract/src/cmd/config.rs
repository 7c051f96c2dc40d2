//! Config and scheduler commands (frappe `commands/utils.py`,
//! `commands/scheduler.py`): `set-config`, `set-maintenance-mode`,
//! `scheduler`, `enable-scheduler`, `disable-scheduler`,
//! `ready-for-migration`. The maintenance and scheduler commands act on
//! `get_site(context)`, i.e. only the **first** site under `--site all`.

use serde_json::{Value, json};

use super::{Ctx, site_not_specified};
use crate::args::{Spec, choice, flag, value};
use crate::bench::{truthy, update_config};
use crate::out::{Fail, Res, exception, os_error};
use crate::py;

const SET_CONFIG: Spec = Spec {
    prog: "bench frappe set-config",
    opts: &[flag(&["-g", "--global"]), flag(&["-p", "--parse"]), flag(&["--as-dict"])],
    required: &["KEY", "VALUE"],
    optional: &[],
};

/// `set-config [-g] [-p] KEY VALUE`: silent. `-p` is `ast.literal_eval`;
/// the string rules of `update_site_config` apply after it (`"0"`/`"1"` →
/// int, `"true"`/`"false"` → bool, `"None"` deletes the key).
pub fn set_config(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = SET_CONFIG.parse(args)?;
    let key = p.positional(0).unwrap_or_default();
    let raw = p.positional(1).unwrap_or_default();
    let value = if p.flag("-p") || p.flag("--as-dict") {
        py::literal_eval(raw).map_err(|e| exception("set_config", &e))?
    } else {
        Value::String(raw.to_owned())
    };
    if p.flag("-g") {
        let path = ctx.bench.sites().join("common_site_config.json");
        if !path.is_file() {
            return Err(os_error(
                &path.display().to_string(),
                &std::io::Error::new(std::io::ErrorKind::NotFound, "[Errno 2] No such file or directory"),
            ));
        }
        return update_config(&path, key, value);
    }
    let sites = ctx.sites();
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    for site in &sites {
        ctx.check_site(site)?;
        update_config(&ctx.bench.site_config_path(site), key, value.clone())?;
    }
    Ok(())
}

const MAINTENANCE: Spec = Spec {
    prog: "bench frappe set-maintenance-mode",
    opts: &[value(&["--site"])],
    required: &["STATE"],
    optional: &[],
};

/// `set-maintenance-mode on|off`: `maintenance_mode` 1/0 in the site's
/// config, no database, no output.
pub fn set_maintenance_mode(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = MAINTENANCE.parse(args)?;
    let state = p.positional(0).unwrap_or_default();
    if state != "on" && state != "off" {
        return Err(
            MAINTENANCE.usage_error(&format!("Invalid value for 'STATE': '{state}' is not one of 'on', 'off'."))
        );
    }
    let site = match p.value("--site") {
        Some(s) => s.to_owned(),
        None => ctx.get_site()?,
    };
    ctx.check_site(&site)?;
    update_config(&ctx.bench.site_config_path(&site), "maintenance_mode", json!(i32::from(state == "on")))
}

const SCHEDULER: Spec = Spec {
    prog: "bench frappe scheduler",
    opts: &[value(&["--site"]), choice(&["--format", "-f"], &["json", "text"]), flag(&["--verbose"])],
    required: &["STATE"],
    optional: &[],
};

/// `scheduler pause|resume|enable|disable|status [-f text|json]`.
pub fn scheduler(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = SCHEDULER.parse(args)?;
    let state = p.positional(0).unwrap_or_default().to_owned();
    const STATES: [&str; 5] = ["pause", "resume", "disable", "enable", "status"];
    if !STATES.contains(&state.as_str()) {
        return Err(SCHEDULER.usage_error(&format!(
            "Invalid value for 'STATE': '{state}' is not one of 'pause', 'resume', 'disable', 'enable', 'status'."
        )));
    }
    let json_out = p.value("--format") == Some("json");
    let site = match p.value("--site") {
        Some(s) => s.to_owned(),
        None => ctx.get_site()?,
    };
    ctx.check_site(&site)?;
    let status = match state.as_str() {
        "status" => {
            let db = ctx.connect(&site)?;
            let conf = ctx.bench.conf(&site);
            let inactive = truthy(conf.get("maintenance_mode"))
                || truthy(conf.get("pause_scheduler"))
                || truthy(conf.get("disable_scheduler"))
                || !db.scheduler_enabled()?;
            if inactive { "disabled" } else { "enabled" }.to_owned()
        }
        "pause" | "resume" => {
            update_config(&ctx.bench.site_config_path(&site), "pause_scheduler", json!(state == "pause"))?;
            format!("{state}d")
        }
        _ => {
            let db = ctx.connect(&site)?;
            db.set_scheduler_enabled(state == "enable")?;
            format!("{state}d")
        }
    };
    if json_out {
        println!("{{\"status\": \"{status}\", \"site\": \"{site}\"}}");
    } else {
        println!("Scheduler is {status} for site {site}");
    }
    Ok(())
}

const TOGGLE: Spec = Spec { prog: "bench frappe enable-scheduler", opts: &[], required: &[], optional: &[] };

/// `enable-scheduler` / `disable-scheduler` (older spelling, all sites).
pub fn toggle_scheduler(ctx: &Ctx, args: &[String], enable: bool) -> Res<()> {
    TOGGLE.parse(args)?;
    let sites = ctx.sites();
    for site in &sites {
        let db = ctx.connect(site)?;
        db.set_scheduler_enabled(enable)?;
        println!("{} for {site}", if enable { "Enabled" } else { "Disabled" });
    }
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    Ok(())
}

const READY: Spec =
    Spec { prog: "bench frappe ready-for-migration", opts: &[value(&["--site"])], required: &[], optional: &[] };

/// `ready-for-migration`: frappe checks for pending background jobs; the
/// fixture has none unless the fault file says `ready=no`.
pub fn ready_for_migration(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = READY.parse(args)?;
    let site = match p.value("--site") {
        Some(s) => s.to_owned(),
        None => ctx.get_site()?,
    };
    ctx.check_site(&site)?;
    if ctx.bench.faults(&site).get("ready").is_some_and(|v| v == "no") {
        println!("NOT READY for migration: site {site} has pending background jobs");
        return Err(Fail(1));
    }
    println!("READY for migration: site {site} does not have any background jobs");
    Ok(())
}
