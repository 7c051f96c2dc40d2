//! benchform's integration tests: one binary, a module per command. They run the real
//! `benchform` binary against real files and real git servers.

// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adapters;
mod adopt;
mod apply;
mod canary;
mod corpus;
mod database;
mod diff;
mod docs;
mod flavours;
mod hostile;
mod init;
mod lock;
mod mariadb;
mod preview;
mod remote;
mod rollback;
mod schema;
mod status;
mod support;
mod swarm;
mod truth;
mod usage;
mod world;
