//! benchform's integration tests: one binary, a module per command. They run the real
//! `benchform` binary against real files and real git servers.

mod corpus;
mod lock;
mod schema;
mod support;
mod usage;
