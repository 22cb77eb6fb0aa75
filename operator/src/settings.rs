//! The operator's own settings (its flags and environment), and the fixed paths and ports of
//! the worker pods it creates.

/// The field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "rivulet-operator";
/// The worker container's HTTP port (`/status`, `/metrics`, probes, control API).
pub const HTTP_PORT: u16 = 8080;
/// The worker container's shuffle port, reached by its peers through the headless Service.
pub const SHUFFLE_PORT: u16 = 6123;
/// Where the ConfigMap (the manifest the workers read) is mounted.
pub const CONFIG_DIR: &str = "/etc/rivulet";
/// The manifest's key in the ConfigMap and its file name under [`CONFIG_DIR`].
pub const JOB_FILE: &str = "job.yaml";
/// The workers' data directory (RocksDB, snapshot staging, final status).
pub const DATA_DIR: &str = "/var/lib/rivulet";
/// The user and group the workers run as (not root).
pub const WORKER_UID: i64 = 65532;
/// How long a worker gets to take its final checkpoint after SIGTERM.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;

/// What the operator is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The worker image of jobs whose spec names none.
    pub worker_image: String,
    /// The cluster's DNS domain, for the workers' peer addresses.
    pub cluster_domain: String,
    /// The port the operator reaches each worker's HTTP API on, at the pod's IP (the
    /// container's [`HTTP_PORT`]; tests point it at a server of their own).
    pub worker_http_port: u16,
    /// Give each job a NetworkPolicy (off unless asked for).
    pub network_policy: Option<NetworkPolicySettings>,
}

/// What each job's NetworkPolicy lets in: the job's own workers to the shuffle port, and
/// the operator (and the scrapers' namespaces, for `/metrics`) to the HTTP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicySettings {
    /// The operator's namespace.
    pub operator_namespace: String,
    /// The labels of the operator's pods.
    pub operator_labels: std::collections::BTreeMap<String, String>,
    /// Namespaces whose pods may scrape the workers' `/metrics` (Prometheus').
    pub scrape_namespaces: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            worker_image: default_worker_image(),
            cluster_domain: "cluster.local".into(),
            worker_http_port: HTTP_PORT,
            network_policy: None,
        }
    }
}

/// The worker image of this release.
pub fn default_worker_image() -> String {
    format!("rivulet/worker:{}", env!("CARGO_PKG_VERSION"))
}
