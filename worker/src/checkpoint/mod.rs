//! Snapshots on object storage: writing them (state files, pending sink output, manifest
//! last), finding and verifying the newest valid one, and retention.
//!
//! Immutable state files (RocksDB SSTs) are uploaded once to `shared/<session>/` and
//! referenced by every later checkpoint that still contains them: RocksDB checkpoints are
//! incremental. Everything else goes under the snapshot's own directory. A snapshot whose
//! manifest is missing, unreadable, of another format version, or whose files fail their
//! size or CRC-32C check is skipped in favour of the previous one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use rivulet_api::manifest::{
    PendingOutput, SnapshotKind, SnapshotManifest, StateFile, FORMAT_VERSION,
};

use crate::output::OutRecord;
use crate::state::LocalStateFile;
pub use rivulet_storage::{JobStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("snapshot {id}: {reason}")]
    Invalid { id: u64, reason: String },
    #[error("local i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An exactly-once sink's epoch output, encoded for the snapshot.
pub struct EncodedOutput {
    pub slot: u32,
    pub epoch: u64,
    pub records: u64,
    pub data: Bytes,
}

impl EncodedOutput {
    /// Encodes `records` into `buf`, which the caller keeps from epoch to epoch: once the
    /// previous epoch's bytes are uploaded and dropped, `buf` reuses their memory instead of
    /// faulting in and growing a fresh buffer of the same size (for a job with much output,
    /// that was a quarter of the worker's time).
    pub fn encode(
        slot: u32,
        epoch: u64,
        records: &[OutRecord],
        buf: &mut BytesMut,
    ) -> Result<Self, CheckpointError> {
        let invalid = |e: postcard::Error| CheckpointError::Invalid {
            id: epoch,
            reason: format!("cannot encode pending output: {e}"),
        };
        let size = postcard::serialize_with_flavor(records, postcard::ser_flavors::Size::default())
            .map_err(invalid)?;
        buf.clear();
        // Reclaims the previous epoch's allocation when nothing refers to it any more, and
        // never grows (copies) while encoding.
        buf.reserve(size);
        postcard::serialize_with_flavor(records, Reused(buf)).map_err(invalid)?;
        Ok(EncodedOutput {
            slot,
            epoch,
            records: records.len() as u64,
            data: buf.split().freeze(),
        })
    }
}

/// A postcard flavor appending to a [`BytesMut`].
struct Reused<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Reused<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.extend_from_slice(&[data]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Writes snapshots of one worker and remembers which immutable files it uploaded.
///
/// Clones share that memory, so an upload can run on the runtime while the worker keeps
/// the writer (one upload at a time per worker).
#[derive(Clone)]
pub struct SnapshotWriter {
    store: JobStore,
    shared_dir: String,
    /// Local file name → the state file entry it was uploaded as.
    shared: Arc<Mutex<HashMap<String, StateFile>>>,
}

impl SnapshotWriter {
    pub fn new(store: JobStore, session: &str) -> Self {
        SnapshotWriter {
            store,
            shared_dir: format!("shared/{session}"),
            shared: Arc::default(),
        }
    }

    fn shared(&self) -> MutexGuard<'_, HashMap<String, StateFile>> {
        // Nothing held across a panic leaves the map half-changed.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// Lets later snapshots reuse the immutable files of a restored snapshot that held
    /// exactly the key groups `range` (files of other ranges may share names with ours).
    pub fn adopt_shared(&self, manifest: &SnapshotManifest, range: std::ops::Range<u32>) {
        let mut shared = self.shared();
        for f in &manifest.state_files {
            if f.path.starts_with("shared/")
                && f.key_group_start == range.start
                && f.key_group_end == range.end
            {
                shared.insert(f.local_name.clone(), f.clone());
            }
        }
    }

    /// Uploads one worker's part of snapshot `id`: its state files (immutable ones once,
    /// under `shared/`; the others under the snapshot's `w<worker>/`) and its sink's pending
    /// output. Returns the manifest entries; the coordinator writes the manifest.
    pub async fn upload_part(
        &self,
        kind: SnapshotKind,
        id: u64,
        worker: u32,
        files: &[LocalStateFile],
        pending: Option<EncodedOutput>,
    ) -> Result<(Vec<StateFile>, Vec<PendingOutput>), CheckpointError> {
        let dir = JobStore::snapshot_dir(kind, id);
        let mut state_files = Vec::with_capacity(files.len());
        for f in files {
            let local_name = f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| CheckpointError::Invalid {
                    id,
                    reason: format!("state file {} has no name", f.path.display()),
                })?;
            if f.immutable {
                let prev = self.shared().get(&local_name).cloned();
                if let Some(prev) = prev {
                    let size = std::fs::metadata(&f.path).map_err(io_err(&f.path))?.len();
                    if size == prev.size {
                        state_files.push(prev);
                        continue;
                    }
                }
            }
            let rel = if f.immutable {
                format!("{}/{local_name}", self.shared_dir)
            } else {
                format!("{dir}/w{worker}/{local_name}")
            };
            let (size, crc32c) = self.store.put_file(&rel, &f.path).await?;
            let entry = StateFile {
                path: rel,
                local_name: local_name.clone(),
                format: f.format,
                key_group_start: f.key_group_start,
                key_group_end: f.key_group_end,
                size,
                crc32c,
            };
            if f.immutable {
                self.shared().insert(local_name, entry.clone());
            }
            state_files.push(entry);
        }
        let mut pending_output = Vec::new();
        if let Some(out) = pending {
            let rel = format!("{dir}/output-{}.bin", out.slot);
            let (size, crc32c) = self.store.put_bytes(&rel, out.data).await?;
            pending_output.push(PendingOutput {
                slot: out.slot,
                epoch: out.epoch,
                path: rel,
                records: out.records,
                size,
                crc32c,
            });
        }
        Ok((state_files, pending_output))
    }

    /// Writes the manifest, which makes the snapshot exist.
    pub async fn write_manifest(&self, manifest: &SnapshotManifest) -> Result<(), CheckpointError> {
        self.store.write_manifest(manifest).await?;
        Ok(())
    }

    /// Keeps the newest `keep` checkpoints up to `upto` with a manifest and deletes the
    /// older ones, including shared files only they referenced. Checkpoints after `upto` may
    /// be in flight and are left alone.
    pub async fn retain(&self, keep: usize, upto: u64) -> Result<(), CheckpointError> {
        let ids = self.store.list_snapshots(SnapshotKind::Checkpoint).await?;
        let mut kept = Vec::new();
        let mut doomed = Vec::new();
        for &id in ids.iter().rev().filter(|id| **id <= upto) {
            if kept.len() < keep {
                if let Ok(m) = self.store.read_manifest(SnapshotKind::Checkpoint, id).await {
                    kept.push(m);
                    continue;
                }
                // No manifest, and not in flight: an unfinished or failed snapshot.
            }
            doomed.push(id);
        }
        let live: HashSet<&str> = kept
            .iter()
            .flat_map(|m| m.state_files.iter().map(|f| f.path.as_str()))
            .collect();
        for id in doomed {
            let old = self
                .store
                .read_manifest(SnapshotKind::Checkpoint, id)
                .await
                .ok();
            self.store
                .delete_snapshot(SnapshotKind::Checkpoint, id)
                .await?;
            if let Some(m) = old {
                for f in m
                    .state_files
                    .iter()
                    .filter(|f| f.path.starts_with("shared/"))
                {
                    if !live.contains(f.path.as_str()) {
                        self.store.delete(&f.path).await?;
                        self.shared().retain(|_, e| e.path != f.path);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A snapshot downloaded and verified, ready to load.
pub struct Restored {
    pub manifest: SnapshotManifest,
    pub state_files: Vec<LocalStateFile>,
    /// Pending output by slot: (epoch, records).
    pub pending_output: HashMap<u32, (u64, Vec<OutRecord>)>,
    /// Bytes of state downloaded.
    pub bytes_read: u64,
}

/// Downloads one snapshot into `local_dir` (which must exist and be empty), verifying every
/// file. State files outside `key_groups` are not downloaded.
pub async fn fetch_snapshot(
    store: &JobStore,
    kind: SnapshotKind,
    id: u64,
    key_groups: std::ops::Range<u32>,
    local_dir: &Path,
) -> Result<Restored, CheckpointError> {
    let manifest = store.read_manifest(kind, id).await?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(CheckpointError::Invalid {
            id,
            reason: format!(
                "format version {} (this worker reads {FORMAT_VERSION})",
                manifest.format_version
            ),
        });
    }
    let mut state_files = Vec::new();
    let mut bytes_read = 0;
    for f in &manifest.state_files {
        if f.key_group_end <= key_groups.start || f.key_group_start >= key_groups.end {
            continue;
        }
        if f.local_name.contains('/') || f.local_name.contains("..") {
            return Err(CheckpointError::Invalid {
                id,
                reason: format!("bad local file name {:?}", f.local_name),
            });
        }
        // Files of different workers may share names (RocksDB's CURRENT, MANIFEST, ...).
        let sub = local_dir.join(format!("{}-{}", f.key_group_start, f.key_group_end));
        std::fs::create_dir_all(&sub).map_err(io_err(&sub))?;
        let local = sub.join(&f.local_name);
        store.get_file(&f.path, &local, f.size, f.crc32c).await?;
        bytes_read += f.size;
        state_files.push(LocalStateFile {
            path: local,
            format: f.format,
            key_group_start: f.key_group_start,
            key_group_end: f.key_group_end,
            immutable: f.path.starts_with("shared/"),
        });
    }
    let mut pending_output = HashMap::new();
    for p in &manifest.pending_output {
        let data = store.get_verified(&p.path, p.size, p.crc32c).await?;
        let records: Vec<OutRecord> =
            postcard::from_bytes(&data).map_err(|e| CheckpointError::Invalid {
                id,
                reason: format!("pending output {}: {e}", p.path),
            })?;
        pending_output.insert(p.slot, (p.epoch, records));
    }
    Ok(Restored {
        manifest,
        state_files,
        pending_output,
        bytes_read,
    })
}

/// The newest checkpoint that downloads and verifies completely, skipping torn ones.
pub async fn fetch_latest_checkpoint(
    store: &JobStore,
    key_groups: std::ops::Range<u32>,
    local_dir: &Path,
) -> Result<Option<Restored>, CheckpointError> {
    let ids = store.list_snapshots(SnapshotKind::Checkpoint).await?;
    for &id in ids.iter().rev() {
        if let Some(r) = try_checkpoint(store, id, key_groups.clone(), local_dir).await? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// The newest checkpoint taken by `deployment`'s workers that can be restored, if any: what a
/// restarted worker of that deployment continues from. Ids only grow, so the search stops
/// at the first complete checkpoint of another deployment.
pub async fn fetch_latest_checkpoint_of(
    store: &JobStore,
    deployment: u64,
    key_groups: std::ops::Range<u32>,
    local_dir: &Path,
) -> Result<Option<Restored>, CheckpointError> {
    let ids = store.list_snapshots(SnapshotKind::Checkpoint).await?;
    for &id in ids.iter().rev() {
        // No manifest (still being written, or torn): not a checkpoint.
        let Ok(manifest) = store.read_manifest(SnapshotKind::Checkpoint, id).await else {
            continue;
        };
        if manifest.deployment != Some(deployment) {
            return Ok(None);
        }
        if let Some(r) = try_checkpoint(store, id, key_groups.clone(), local_dir).await? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Checkpoint `id` downloaded into a fresh directory under `local_dir`, or `None` (logged)
/// when it cannot be restored.
async fn try_checkpoint(
    store: &JobStore,
    id: u64,
    key_groups: std::ops::Range<u32>,
    local_dir: &Path,
) -> Result<Option<Restored>, CheckpointError> {
    let dir = local_dir.join(rivulet_api::manifest::snapshot_dir_name(id));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    match fetch_snapshot(store, SnapshotKind::Checkpoint, id, key_groups, &dir).await {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            tracing::warn!(checkpoint = id, error = %e, "skipping checkpoint that cannot be restored");
            Ok(None)
        }
    }
}

/// The highest snapshot id present (with or without manifest), so new ids never collide.
pub async fn highest_id(store: &JobStore) -> Result<u64, CheckpointError> {
    let c = store.list_snapshots(SnapshotKind::Checkpoint).await?;
    let s = store.list_snapshots(SnapshotKind::Savepoint).await?;
    Ok(c.into_iter().chain(s).max().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalStateFile;
    use rivulet_api::manifest::StateFileFormat;

    fn manifest(id: u64, state_files: Vec<StateFile>) -> SnapshotManifest {
        SnapshotManifest {
            format_version: FORMAT_VERSION,
            kind: SnapshotKind::Checkpoint,
            id,
            namespace: "ns".into(),
            job: "job".into(),
            created_at_ms: 0,
            duration_ms: 0,
            max_parallelism: 4,
            parallelism: 1,
            state_backend: "rocksdb".into(),
            pipeline_fingerprint: String::new(),
            state_files,
            source_offsets: Vec::new(),
            watermark_ms: None,
            pending_output: Vec::new(),
            deployment: None,
        }
    }

    /// Retention after checkpoint `upto` keeps the newest complete ones up to it and leaves
    /// a later checkpoint still uploading alone (it runs while the next one is in flight),
    /// along with the shared files that one reuses.
    #[tokio::test]
    async fn retention_leaves_checkpoints_in_flight_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}", dir.path().join("store").display());
        let store = JobStore::open(&url, "ns", "job").expect("store");
        let writer = SnapshotWriter::new(store.clone(), "w0-1");
        let local = dir.path().join("local");
        std::fs::create_dir_all(&local).expect("local dir");
        let file = |name: &str, body: &[u8], immutable: bool| {
            let path = local.join(name);
            std::fs::write(&path, body).expect("write");
            LocalStateFile {
                path,
                format: StateFileFormat::RocksdbNative,
                key_group_start: 0,
                key_group_end: 4,
                immutable,
            }
        };
        let old = file("000001.sst", b"only in checkpoint 1", true);
        let kept = file("000002.sst", b"in every checkpoint", true);
        for id in 1..=5u64 {
            let current = file("CURRENT", format!("MANIFEST-{id}").as_bytes(), false);
            let mut files = vec![kept.clone(), current];
            if id == 1 {
                files.push(old.clone());
            }
            let (state_files, _) = writer
                .upload_part(SnapshotKind::Checkpoint, id, 0, &files, None)
                .await
                .expect("upload");
            // Checkpoint 5 is still in flight: no manifest yet.
            if id < 5 {
                store
                    .write_manifest(&manifest(id, state_files))
                    .await
                    .expect("manifest");
            }
        }
        writer.retain(2, 4).await.expect("retain");
        let left = store
            .list_snapshots(SnapshotKind::Checkpoint)
            .await
            .expect("list");
        assert_eq!(left, vec![3, 4, 5]);
        let shared = writer.shared();
        assert!(shared.contains_key("000002.sst"), "{shared:?}");
        assert!(!shared.contains_key("000001.sst"), "{shared:?}");
    }
}
