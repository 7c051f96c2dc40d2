//! benchform's pure core: the content-addressed image tag, the per-site record and its
//! fingerprint, reading `bench` output, and the desired-versus-observed comparison behind
//! `status` (and, next, the planner). No I/O: adapters observe, this crate decides.

pub mod bench;
pub mod bench_command;
pub mod containerfile;
pub mod credentials;
pub mod diff;
pub mod envfile;
pub mod fingerprint;
pub mod patches;
pub mod plan;
pub mod record;
pub mod recovery;
pub mod schedule;
pub mod status;
pub mod step;
pub mod swarm;
pub mod tag;
pub mod verify;
