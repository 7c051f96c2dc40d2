//! How results look: each view turns a value (plan, status, diff, an apply's progress) into
//! text, markdown or JSON. Commands decide what to show; views decide how; the [`Shell`] they are
//! given writes it.
//!
//! [`Shell`]: crate::shell::Shell

pub mod apply;
pub mod diff;
pub mod plan;
pub mod status;
