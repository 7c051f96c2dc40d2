//! `benchform status`: the observed world next to the desired one.

use benchform_bench::Refresh;
use benchform_core::status;

use crate::Status;
use crate::cli::{Format, StatusArgs};
use crate::observe;
use crate::render;
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &StatusArgs) -> Status {
    let p = match observe::prepare(shell, args.manifest.file.as_deref(), false) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let refresh = if args.refresh_full() { Refresh::Full } else { Refresh::Cheap };
    let (session, observed) = match crate::runtime().block_on(p.observe(refresh)) {
        Ok(observed) => observed,
        Err(e) => return observe::failed(shell, &e),
    };
    let report = status::compare(&p.manifest, Some(&p.lock), &p.desired, &observed);
    match args.format {
        Format::Json => shell.out(&render::json(&report)),
        Format::Text => {
            // Which engine, and why that one (the Docker CLI's order: DOCKER_HOST, DOCKER_CONTEXT,
            // the config file's currentContext, the local socket).
            shell.out(&format!("Engine: {} ({})\n", session.engine.host(), session.engine.source()));
            shell.out(&crate::views::status::text(&report));
        }
    }
    Status::Success
}
