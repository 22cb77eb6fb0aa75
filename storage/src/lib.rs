//! The job's directory on object storage and the operations snapshots need from it.
//!
//! `file:///abs`, `file://./relative` (resolved against the working directory),
//! `s3://bucket/prefix`, `gs://bucket/prefix` and `az://container/prefix` are supported.
//! Credentials and endpoints come from each cloud's usual environment variables (`AWS_*`,
//! e.g. `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP`; `GOOGLE_*`; `AZURE_*`), which the operator
//! fills from the job's credentials Secret. Everything lives under
//! `<storage>/<namespace>/<job>/`.

pub mod catalog;

pub use catalog::SnapshotCatalog;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rivulet_api::manifest::{
    parse_snapshot_dir_name, snapshot_dir_name, SnapshotKind, SnapshotManifest, MANIFEST_FILE,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("local file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected {expected_size} bytes with crc32c {expected_crc:08x}, found {size} bytes with crc32c {crc:08x}")]
    Checksum {
        path: String,
        expected_size: u64,
        expected_crc: u32,
        size: u64,
        crc: u32,
    },
    #[error("manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
}

/// The job's prefix on an object store.
#[derive(Clone)]
pub struct JobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl JobStore {
    /// The job directory `<url>/<namespace>/<job>`.
    pub fn open(url: &str, namespace: &str, job: &str) -> Result<Self, StoreError> {
        Self::open_with(url, namespace, job, &StoreEnv::default())
    }

    /// Like [`JobStore::open`], with `env` overriding this process's environment: the
    /// operator reaches each job's storage with the credentials of the job's Secret.
    pub fn open_with(
        url: &str,
        namespace: &str,
        job: &str,
        env: &StoreEnv,
    ) -> Result<Self, StoreError> {
        let (store, base, display) = open_url(url, env)?;
        let prefix = base.clone().join(namespace).join(job);
        Ok(JobStore {
            store,
            prefix,
            display: format!("{}/{namespace}/{job}", display.trim_end_matches('/')),
        })
    }

    /// The job store and snapshot a snapshot-directory URL points at, e.g.
    /// `s3://b/p/ns/job/savepoints/00000000000000000007`.
    pub fn for_snapshot_url(url: &str) -> Result<(Self, SnapshotKind, u64), StoreError> {
        Self::for_snapshot_url_with(url, &StoreEnv::default())
    }

    /// Like [`JobStore::for_snapshot_url`], with `env` overriding this process's environment.
    pub fn for_snapshot_url_with(
        url: &str,
        env: &StoreEnv,
    ) -> Result<(Self, SnapshotKind, u64), StoreError> {
        let trimmed = url.trim_end_matches('/');
        let bad = |reason: &str| StoreError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (rest, id) = trimmed
            .rsplit_once('/')
            .ok_or_else(|| bad("expected …/checkpoints/<id> or …/savepoints/<id>"))?;
        let id = parse_snapshot_dir_name(id)
            .ok_or_else(|| bad("the last path segment is not a snapshot id"))?;
        let (job_url, kind) = rest
            .rsplit_once('/')
            .and_then(|(job, k)| match k {
                "checkpoints" => Some((job, SnapshotKind::Checkpoint)),
                "savepoints" => Some((job, SnapshotKind::Savepoint)),
                _ => None,
            })
            .ok_or_else(|| bad("expected …/checkpoints/<id> or …/savepoints/<id>"))?;
        let (store, prefix, display) = open_url(job_url, env)?;
        Ok((
            JobStore {
                store,
                prefix,
                display,
            },
            kind,
            id,
        ))
    }

    pub fn url(&self) -> &str {
        &self.display
    }

    fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// The URL of a snapshot's directory (what `--restore` and `restoreFrom` take).
    pub fn snapshot_url(&self, kind: SnapshotKind, id: u64) -> String {
        format!(
            "{}/{}",
            self.display.trim_end_matches('/'),
            Self::snapshot_dir(kind, id)
        )
    }

    /// Completed snapshots of `kind` (those whose manifest is written), oldest first.
    pub async fn completed(&self, kind: SnapshotKind) -> Result<Vec<SnapshotManifest>, StoreError> {
        let mut out = Vec::new();
        for id in self.list_snapshots(kind).await? {
            match self.read_manifest(kind, id).await {
                Ok(m) => out.push(m),
                // Still being written, or being deleted.
                Err(StoreError::ObjectStore(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Relative path of a snapshot's directory.
    pub fn snapshot_dir(kind: SnapshotKind, id: u64) -> String {
        format!("{}/{}", kind.dir(), snapshot_dir_name(id))
    }

    /// Uploads a local file; returns its size and CRC-32C.
    pub async fn put_file(&self, rel: &str, local: &FsPath) -> Result<(u64, u32), StoreError> {
        let data = tokio::fs::read(local)
            .await
            .map_err(|source| StoreError::Io {
                path: local.to_path_buf(),
                source,
            })?;
        self.put_bytes(rel, Bytes::from(data)).await
    }

    pub async fn put_bytes(&self, rel: &str, data: Bytes) -> Result<(u64, u32), StoreError> {
        let size = data.len() as u64;
        let crc = crc32c::crc32c(&data);
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(data))
            .await?;
        Ok((size, crc))
    }

    /// Downloads and verifies an object.
    pub async fn get_verified(
        &self,
        rel: &str,
        expected_size: u64,
        expected_crc: u32,
    ) -> Result<Bytes, StoreError> {
        let data = self.store.get(&self.path(rel)).await?.bytes().await?;
        let crc = crc32c::crc32c(&data);
        if data.len() as u64 != expected_size || crc != expected_crc {
            return Err(StoreError::Checksum {
                path: rel.to_string(),
                expected_size,
                expected_crc,
                size: data.len() as u64,
                crc,
            });
        }
        Ok(data)
    }

    /// Downloads and verifies an object into a local file.
    pub async fn get_file(
        &self,
        rel: &str,
        local: &FsPath,
        expected_size: u64,
        expected_crc: u32,
    ) -> Result<(), StoreError> {
        let data = self.get_verified(rel, expected_size, expected_crc).await?;
        tokio::fs::write(local, &data)
            .await
            .map_err(|source| StoreError::Io {
                path: local.to_path_buf(),
                source,
            })
    }

    /// Writes a manifest: the last write of a snapshot, refused if one is there already.
    pub async fn write_manifest(&self, m: &SnapshotManifest) -> Result<(), StoreError> {
        let rel = format!("{}/{MANIFEST_FILE}", Self::snapshot_dir(m.kind, m.id));
        let body = serde_json::to_vec_pretty(m).map_err(|e| StoreError::Manifest {
            path: rel.clone(),
            reason: e.to_string(),
        })?;
        let path = self.path(&rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body.clone()), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::AlreadyExists(rel)),
            Err(object_store::Error::NotImplemented { .. }) => {
                // Stores without conditional writes: check, then write.
                if self.store.head(&path).await.is_ok() {
                    return Err(StoreError::AlreadyExists(rel));
                }
                self.store.put(&path, PutPayload::from(body)).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read_manifest(
        &self,
        kind: SnapshotKind,
        id: u64,
    ) -> Result<SnapshotManifest, StoreError> {
        let rel = format!("{}/{MANIFEST_FILE}", Self::snapshot_dir(kind, id));
        let data = self.store.get(&self.path(&rel)).await?.bytes().await?;
        serde_json::from_slice(&data).map_err(|e| StoreError::Manifest {
            path: rel,
            reason: e.to_string(),
        })
    }

    /// Ids of snapshot directories of `kind` (with or without a manifest), ascending.
    pub async fn list_snapshots(&self, kind: SnapshotKind) -> Result<Vec<u64>, StoreError> {
        let dir = self.path(kind.dir());
        let listing = self.store.list_with_delimiter(Some(&dir)).await?;
        let mut ids: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(parse_snapshot_dir_name))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Deletes a snapshot: the manifest first, so a half-deleted snapshot is never restored.
    pub async fn delete_snapshot(&self, kind: SnapshotKind, id: u64) -> Result<(), StoreError> {
        let dir = Self::snapshot_dir(kind, id);
        let manifest = self.path(&format!("{dir}/{MANIFEST_FILE}"));
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let objects: Vec<_> = self
            .store
            .list(Some(&self.path(&dir)))
            .try_collect()
            .await?;
        for o in objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Opens the store for a URL and returns it with the path prefix inside it.
/// Environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) that override this process's for
/// one store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreEnv(pub Vec<(String, String)>);

impl StoreEnv {
    /// The variable's value: the override, else this process's environment.
    fn var(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    }

    /// The overrides starting with `prefix`, as the builders' lowercase config keys.
    fn keys<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (String, &'a str)> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
    }
}

fn open_url(url: &str, env: &StoreEnv) -> Result<(Arc<dyn ObjectStore>, Path, String), StoreError> {
    let bad = |reason: String| StoreError::Url {
        url: url.to_string(),
        reason,
    };
    if let Some(rest) = url.strip_prefix("file://") {
        // `file://./x` is `x` under the working directory.
        let p = PathBuf::from(rest.trim_start_matches("./"));
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir()
                .map_err(|e| bad(e.to_string()))?
                .join(p)
        };
        std::fs::create_dir_all(&abs).map_err(|source| StoreError::Io {
            path: abs.clone(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&abs)?.with_automatic_cleanup(true);
        return Ok((
            Arc::new(store),
            Path::default(),
            format!("file://{}", abs.display()),
        ));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = bucket_and_prefix(rest).map_err(bad)?;
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (key, value) in env.keys("AWS_") {
            if let Ok(k) = key.parse::<object_store::aws::AmazonS3ConfigKey>() {
                b = b.with_config(k, value);
            }
        }
        if let Some(endpoint) = env.var("AWS_ENDPOINT_URL") {
            b = b.with_endpoint(endpoint);
        }
        if env
            .var("AWS_ALLOW_HTTP")
            .is_some_and(|v| v == "true" || v == "1")
        {
            b = b.with_allow_http(true);
        }
        if env.var("AWS_REGION").is_none() && env.var("AWS_DEFAULT_REGION").is_none() {
            b = b.with_region("us-east-1");
        }
        let store = b.build()?;
        return Ok((Arc::new(store), Path::from(prefix), url.to_string()));
    }
    if let Some(rest) = url.strip_prefix("gs://") {
        let (bucket, prefix) = bucket_and_prefix(rest).map_err(bad)?;
        let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
        for (key, value) in env.keys("GOOGLE_") {
            if let Ok(k) = key.parse::<object_store::gcp::GoogleConfigKey>() {
                b = b.with_config(k, value);
            }
        }
        let store = b.build()?;
        return Ok((Arc::new(store), Path::from(prefix), url.to_string()));
    }
    if let Some(rest) = url.strip_prefix("az://") {
        let (container, prefix) = bucket_and_prefix(rest).map_err(bad)?;
        let mut b = MicrosoftAzureBuilder::from_env().with_container_name(container);
        for (key, value) in env.keys("AZURE_") {
            if let Ok(k) = key.parse::<object_store::azure::AzureConfigKey>() {
                b = b.with_config(k, value);
            }
        }
        let store = b.build()?;
        return Ok((Arc::new(store), Path::from(prefix), url.to_string()));
    }
    Err(bad(
        "unsupported scheme: use file://, s3://, gs:// or az://".into(),
    ))
}

/// `bucket/some/prefix` → (`bucket`, `some/prefix`).
fn bucket_and_prefix(rest: &str) -> Result<(&str, &str), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket or container name".into());
    }
    Ok((bucket, prefix))
}
