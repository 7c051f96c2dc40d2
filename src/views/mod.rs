//! How results look: each view turns a value (plan, status, diff, an apply's progress) into
//! text, markdown or JSON. Commands decide what to show; views decide how; only `output` writes.

pub mod apply;
pub mod plan;
