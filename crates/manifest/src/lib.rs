//! benchform's manifest (`benchform.yaml`) and lock (`benchform.lock`): reading with source
//! positions, validation that reports every problem at once, the JSON schemas, and the pure parts
//! of locking. This crate does no I/O: callers hand it bytes and listings.

pub mod diagnostic;
pub mod lock;
pub mod mask;
pub mod model;
pub mod names;
mod rules;
pub mod schema;
pub mod validate;
pub mod version;
pub mod yaml;

pub use diagnostic::{Code, Diagnostic, Severity, Snippet};
pub use lock::{LockEntry, LockFile, RefKind};
pub use model::Manifest;
pub use validate::{Validation, validate};
