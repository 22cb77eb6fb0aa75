//! The local job store: what the Kubernetes API server keeps for StreamJobs, kept under the
//! work directory so `rivulet apply`, `get`, `scale` and friends work without a cluster.
//!
//! Each job has a directory `<work>/jobs/<namespace>/<name>/` holding:
//! - `job.yaml`: the StreamJob as applied (metadata with `generation`, which every spec
//!   change bumps, and `deletionTimestamp` once deleted; the spec);
//! - `status.json`: the status, written only by the control plane (`rivulet run`);
//! - `events.jsonl`: the job's recent events, newest last.
//!
//! Writers take an exclusive lock on the job's directory, and every file is replaced
//! atomically (written beside, then renamed), so a reader never sees half a file and a
//! killed writer never leaves one. A change is validated as the API server would (the
//! schema's rules and the CEL rules against the previous spec) before anything is written:
//! a bad change leaves the job as it was.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rivulet_api::job::StreamJob;
use rivulet_api::{LoadError, StreamJobSpec, StreamJobStatus};
use serde::{Deserialize, Serialize};

/// Events kept per job.
const EVENTS_KEPT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Invalid(#[from] LoadError),
    #[error("streamjob {namespace}/{name} not found (apply it first: rivulet apply -f JOB.yaml)")]
    NotFound { namespace: String, name: String },
    #[error("streamjob {namespace}/{name} is being deleted")]
    Deleting { namespace: String, name: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What an apply did, in `kubectl`'s words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    pub fn word(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub time: Time,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// The top-level spec fields that differ between `old` and `new` (`parallelism`,
/// `pipeline`, …), for saying what an apply changed.
pub fn spec_changes(old: &StreamJobSpec, new: &StreamJobSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("spec.{k}"))
        .collect()
}

/// The StreamJobs kept under one work directory.
#[derive(Clone, Debug)]
pub struct Jobs {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JobsError + '_ {
    move |source| JobsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `path` with `data` atomically.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), JobsError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// An exclusive lock on a job's directory, held while it lives.
struct Lock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl Jobs {
    pub fn new(work_dir: &Path) -> Jobs {
        Jobs {
            root: work_dir.join("jobs"),
        }
    }

    /// The directory of a job (its runtime keeps its own records there too).
    pub fn dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join(namespace).join(name)
    }

    fn lock(&self, namespace: &str, name: &str) -> Result<Lock, JobsError> {
        let dir = self.dir(namespace, name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(".lock");
        let f = File::create(&path).map_err(io(&path))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(Lock)
            .map_err(|(_, e)| JobsError::Io {
                path,
                source: std::io::Error::from(e),
            })
    }

    /// The job with its status, if it exists.
    pub fn get(&self, namespace: &str, name: &str) -> Result<Option<StreamJob>, JobsError> {
        let dir = self.dir(namespace, name);
        let path = dir.join("job.yaml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let mut job: StreamJob = serde_yaml::from_str(&text).map_err(|e| JobsError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let status_path = dir.join("status.json");
        job.status = match std::fs::read(&status_path) {
            Ok(data) => Some(
                serde_json::from_slice(&data).map_err(|e| JobsError::Corrupt {
                    path: status_path.clone(),
                    reason: e.to_string(),
                })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&status_path)(e)),
        };
        Ok(Some(job))
    }

    /// The job, or an error saying it does not exist.
    pub fn require(&self, namespace: &str, name: &str) -> Result<StreamJob, JobsError> {
        self.get(namespace, name)?
            .ok_or_else(|| JobsError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
            })
    }

    /// Every job, by namespace and name.
    pub fn list(&self) -> Result<Vec<StreamJob>, JobsError> {
        let mut out = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        let mut names = Vec::new();
        for ns in namespaces.flatten() {
            let Ok(jobs) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for j in jobs.flatten() {
                names.push((
                    ns.file_name().to_string_lossy().into_owned(),
                    j.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
        names.sort();
        for (ns, name) in names {
            if let Some(job) = self.get(&ns, &name)? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Creates or updates a job from a manifest (`kubectl apply`): validated first (the CEL
    /// rules against the stored spec included); the generation moves when the spec does.
    pub fn apply(&self, mut job: StreamJob, now: Time) -> Result<Applied, JobsError> {
        let ns = job.job_namespace().to_string();
        let name = job.job_name().to_string();
        let _lock = self.lock(&ns, &name)?;
        let old = self.get(&ns, &name)?;
        if old
            .as_ref()
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
        {
            return Err(JobsError::Deleting {
                namespace: ns,
                name,
            });
        }
        rivulet_api::validate::validate_cel(&job, old.as_ref())?;
        let applied = match &old {
            None => {
                job.metadata.generation = Some(1);
                job.metadata.creation_timestamp = Some(now);
                job.metadata.namespace = Some(ns.clone());
                Applied::Created
            }
            Some(o) => {
                let same = spec_changes(&o.spec, &job.spec).is_empty();
                job.metadata.creation_timestamp = o.metadata.creation_timestamp.clone();
                job.metadata.namespace = Some(ns.clone());
                let generation = o.metadata.generation.unwrap_or(1);
                if same {
                    job.metadata.generation = Some(generation);
                    if o.metadata.labels == job.metadata.labels
                        && o.metadata.annotations == job.metadata.annotations
                    {
                        return Ok(Applied::Unchanged);
                    }
                    // Labels or annotations only: written, but the spec's generation stays.
                    Applied::Configured
                } else {
                    job.metadata.generation = Some(generation + 1);
                    Applied::Configured
                }
            }
        };
        job.status = None;
        self.write_job(&job)?;
        Ok(applied)
    }

    /// Changes a stored job's spec (`kubectl scale`, `patch`): `edit` changes it, the result
    /// is validated like an apply, and nothing is written if it fails.
    pub fn edit(
        &self,
        namespace: &str,
        name: &str,
        now: Time,
        edit: impl FnOnce(&mut StreamJobSpec),
    ) -> Result<Applied, JobsError> {
        let mut job = self.require(namespace, name)?;
        edit(&mut job.spec);
        // The edited spec is checked by the same rules a manifest is.
        let yaml = serde_yaml::to_string(&job).map_err(|e| JobsError::Corrupt {
            path: self.dir(namespace, name).join("job.yaml"),
            reason: e.to_string(),
        })?;
        let mut checked = rivulet_api::load_manifest(&yaml)?;
        checked.metadata = job.metadata;
        self.apply(checked, now)
    }

    fn write_job(&self, job: &StreamJob) -> Result<(), JobsError> {
        let dir = self.dir(job.job_namespace(), job.job_name());
        let path = dir.join("job.yaml");
        let mut stored = job.clone();
        stored.status = None;
        let yaml = serde_yaml::to_string(&stored).map_err(|e| JobsError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, yaml.as_bytes())
    }

    /// Marks a job deleted (`kubectl delete`): its control plane winds it down and then
    /// removes it.
    pub fn mark_deleting(&self, namespace: &str, name: &str, now: Time) -> Result<bool, JobsError> {
        let _lock = self.lock(namespace, name)?;
        let mut job = self.require(namespace, name)?;
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(false);
        }
        job.metadata.deletion_timestamp = Some(now);
        self.write_job(&job)?;
        Ok(true)
    }

    /// Writes the status (the control plane's write-ahead log).
    pub fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &StreamJobStatus,
    ) -> Result<(), JobsError> {
        let path = self.dir(namespace, name).join("status.json");
        let data = serde_json::to_vec_pretty(status).map_err(|e| JobsError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &data)
    }

    /// Appends events, keeping the newest [`EVENTS_KEPT`].
    pub fn record_events(
        &self,
        namespace: &str,
        name: &str,
        events: &[rivulet_control::Event],
        now: &Time,
    ) -> Result<(), JobsError> {
        if events.is_empty() {
            return Ok(());
        }
        let _lock = self.lock(namespace, name)?;
        let mut all = self.events(namespace, name)?;
        all.extend(events.iter().map(|e| EventRecord {
            time: now.clone(),
            type_: if e.warning { "Warning" } else { "Normal" }.into(),
            reason: e.reason.clone(),
            message: e.message.clone(),
        }));
        let skip = all.len().saturating_sub(EVENTS_KEPT);
        let mut text = String::new();
        for e in &all[skip..] {
            if let Ok(line) = serde_json::to_string(e) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        write_atomic(
            &self.dir(namespace, name).join("events.jsonl"),
            text.as_bytes(),
        )
    }

    /// The job's recent events, oldest first.
    pub fn events(&self, namespace: &str, name: &str) -> Result<Vec<EventRecord>, JobsError> {
        let path = self.dir(namespace, name).join("events.jsonl");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Removes a job whose deletion is complete.
    pub fn remove(&self, namespace: &str, name: &str) -> Result<(), JobsError> {
        let dir = self.dir(namespace, name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
apiVersion: rivulet.dev/v1alpha1
kind: StreamJob
metadata: {name: clicks}
spec:
  parallelism: 1
  pipeline:
    source: {topics: [clicks]}
    time: {type: event, field: ts}
    key: [user]
    window: {type: tumbling, size: 10s}
    aggregates: [{name: n, fn: count}]
    sink: {topic: out}
  state: {storage: "file:///tmp/s"}
"#;

    fn now() -> Time {
        rivulet_control::plan::time(1_700_000_000_000)
    }

    #[test]
    fn apply_counts_generations_and_refuses_bad_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = Jobs::new(dir.path());
        let job = rivulet_api::load_manifest(JOB).expect("valid");
        assert_eq!(
            jobs.apply(job.clone(), now()).expect("apply"),
            Applied::Created
        );
        assert_eq!(
            jobs.apply(job.clone(), now()).expect("apply"),
            Applied::Unchanged
        );
        let stored = jobs.require("default", "clicks").expect("stored");
        assert_eq!(stored.metadata.generation, Some(1));

        let scaled = jobs
            .edit("default", "clicks", now(), |s| s.parallelism = 3)
            .expect("scale");
        assert_eq!(scaled, Applied::Configured);
        assert_eq!(
            jobs.require("default", "clicks")
                .expect("stored")
                .metadata
                .generation,
            Some(2)
        );

        // maxParallelism is immutable: refused, nothing written.
        let err = jobs
            .edit("default", "clicks", now(), |s| s.max_parallelism = 256)
            .expect_err("immutable");
        assert!(err.to_string().contains("spec"), "{err}");
        assert!(err.to_string().contains("immutable"), "{err}");
        // parallelism above maxParallelism: refused by the validator, naming the field.
        let err = jobs
            .edit("default", "clicks", now(), |s| s.parallelism = 1000)
            .expect_err("too many");
        assert!(err.to_string().contains("spec.parallelism"), "{err}");
        let stored = jobs.require("default", "clicks").expect("stored");
        assert_eq!(stored.spec.parallelism, 3);
        assert_eq!(stored.metadata.generation, Some(2));
    }

    #[test]
    fn status_and_events_survive_a_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = Jobs::new(dir.path());
        let job = rivulet_api::load_manifest(JOB).expect("valid");
        jobs.apply(job, now()).expect("apply");
        let status = StreamJobStatus {
            phase: Some(rivulet_api::job_status::Phase::Running),
            ..Default::default()
        };
        jobs.write_status("default", "clicks", &status)
            .expect("status");
        let events = [rivulet_control::Event {
            warning: false,
            reason: "Deployed".into(),
            message: "1 worker".into(),
        }];
        jobs.record_events("default", "clicks", &events, &now())
            .expect("events");
        let job = jobs.require("default", "clicks").expect("stored");
        assert_eq!(job.status, Some(status));
        assert_eq!(
            jobs.events("default", "clicks").expect("events")[0].reason,
            "Deployed"
        );
        assert!(jobs
            .mark_deleting("default", "clicks", now())
            .expect("delete"));
        assert!(!jobs
            .mark_deleting("default", "clicks", now())
            .expect("again"));
        let job = jobs.require("default", "clicks").expect("stored");
        let err = jobs.apply(job, now()).expect_err("being deleted");
        assert!(matches!(err, JobsError::Deleting { .. }), "{err}");
        jobs.remove("default", "clicks").expect("remove");
        assert!(jobs.get("default", "clicks").expect("read").is_none());
    }
}
