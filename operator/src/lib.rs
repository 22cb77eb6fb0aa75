//! `rivulet-operator`: the Kubernetes side of Rivulet's control plane.
//!
//! The same lifecycle planner that `rivulet run` drives on one machine
//! ([`rivulet_control::plan`]) runs here against a cluster: a StreamJob becomes a ConfigMap,
//! a headless Service, a StatefulSet of workers, a PodDisruptionBudget and a control-token
//! Secret ([`objects`]), configured by the operator's [`settings`], for jobs that can run in a
//! cluster ([`check`]), with the API access listed in [`rbac`].

pub mod check;
pub mod cluster;
pub mod controller;
pub mod metrics;
pub mod objects;
pub mod rbac;
pub mod render;
pub mod run;
pub mod settings;
pub mod worker_api;

pub use settings::Settings;
