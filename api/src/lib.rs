//! Rivulet's shared contract between the operator and the workers.
//!
//! - [`job`]: the `StreamJob` custom resource (spec, lifecycle settings, CRD).
//! - [`job_status`]: the `StreamJob` status the control plane writes.
//! - [`spec`]: the pipeline and state spec, loaded from YAML.
//! - [`validate`]: semantic validation that names every bad field by its path.
//! - [`expr`]: the grammar and parser of projection expressions (`price * 0.908`).
//! - [`duration`]: the human duration type used throughout the spec (`"10s"`).
//! - [`keygroup`]: the key-group hash and the range of key groups each worker owns.
//! - [`manifest`]: the snapshot (checkpoint/savepoint) manifest written to object storage.
//! - [`status`]: the status document a worker serves at `/status`.
//! - [`launch`]: how a worker is started (its command line and environment).

pub mod duration;
pub mod expr;
pub mod job;
pub mod job_status;
pub mod keygroup;
pub mod launch;
pub mod manifest;
pub mod spec;
pub mod status;
pub mod validate;

pub use duration::Duration;
pub use job::{StreamJob, StreamJobSpec};
pub use job_status::StreamJobStatus;
pub use launch::WorkerLaunch;
pub use spec::PipelineSpec;
pub use validate::{load_manifest, FieldError, LoadError};
