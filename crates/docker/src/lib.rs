//! Adapters for the container side of a deployment: the Docker Engine (bollard), registries (via
//! the engine's distribution endpoint and the Docker config file), compose (v1 and v2), and image
//! builds and pushes (the Docker CLI, for BuildKit secrets). Each is a thin, real implementation;
//! decisions live in the pure core, not here.

pub mod build;
pub mod compose;
pub mod context;
pub mod endpoint;
pub mod engine;
pub mod lock;
pub mod registry;
pub mod ssh;
pub mod swarm;
pub mod tlsprobe;

pub use engine::{ContainerInfo, Engine, EngineError, ExecOutput, ExecSpec, ImageInfo};
pub use registry::{RegistryError, TagState};
