//! What a control plane observes of a job's snapshots: the newest completed checkpoint and
//! every completed savepoint, as the planner's [`Snapshots`]. Manifests are read once and
//! kept (a completed snapshot never changes); what storage no longer lists is forgotten.
//! `rivulet`'s local runtime and the operator's Kubernetes runtime both observe through it.

use std::collections::HashMap;

use rivulet_api::manifest::{SnapshotKind, SnapshotManifest};
use rivulet_control::observed::{Snapshot, Snapshots};

use crate::{JobStore, StoreEnv, StoreError};

/// The manifests read so far, by snapshot kind and id.
#[derive(Debug, Default)]
pub struct SnapshotCatalog {
    manifests: HashMap<(u8, u64), SnapshotManifest>,
}

impl SnapshotCatalog {
    pub fn new() -> SnapshotCatalog {
        SnapshotCatalog::default()
    }

    /// The completed snapshots in `store` now.
    pub async fn observe(&mut self, store: &JobStore) -> Result<Snapshots, StoreError> {
        let checkpoints = self.listed(store, SnapshotKind::Checkpoint).await?;
        let savepoints = self.listed(store, SnapshotKind::Savepoint).await?;
        let snapshot = |m: &SnapshotManifest, kind| Snapshot {
            id: m.id,
            path: store.snapshot_url(kind, m.id),
            size_bytes: m.state_size(),
            time_ms: m.created_at_ms,
            duration_ms: m.duration_ms,
        };
        // The newest completed checkpoint: the highest id with a manifest.
        let mut latest_checkpoint = None;
        for &id in checkpoints.iter().rev() {
            if let Some(m) = self.manifest(store, SnapshotKind::Checkpoint, id).await? {
                latest_checkpoint = Some(snapshot(&m, SnapshotKind::Checkpoint));
                break;
            }
        }
        let mut completed = Vec::new();
        for &id in &savepoints {
            if let Some(m) = self.manifest(store, SnapshotKind::Savepoint, id).await? {
                completed.push(snapshot(&m, SnapshotKind::Savepoint));
            }
        }
        Ok(Snapshots {
            latest_checkpoint,
            savepoints: completed,
        })
    }

    /// Deletes a snapshot by its URL (reached with `env`) and forgets it; returns its id.
    pub async fn delete(&mut self, url: &str, env: &StoreEnv) -> Result<u64, StoreError> {
        let (store, kind, id) = JobStore::for_snapshot_url_with(url, env)?;
        store.delete_snapshot(kind, id).await?;
        self.manifests.remove(&(kind as u8, id));
        Ok(id)
    }

    /// The ids of `kind` in storage, oldest first; forgets the manifests of the others.
    async fn listed(
        &mut self,
        store: &JobStore,
        kind: SnapshotKind,
    ) -> Result<Vec<u64>, StoreError> {
        let ids = store.list_snapshots(kind).await?;
        let k = kind as u8;
        self.manifests
            .retain(|(mk, id), _| *mk != k || ids.contains(id));
        Ok(ids)
    }

    async fn manifest(
        &mut self,
        store: &JobStore,
        kind: SnapshotKind,
        id: u64,
    ) -> Result<Option<SnapshotManifest>, StoreError> {
        if let Some(m) = self.manifests.get(&(kind as u8, id)) {
            return Ok(Some(m.clone()));
        }
        match store.read_manifest(kind, id).await {
            Ok(m) => {
                self.manifests.insert((kind as u8, id), m.clone());
                Ok(Some(m))
            }
            // Not complete yet, or being deleted.
            Err(StoreError::ObjectStore(object_store::Error::NotFound { .. })) => Ok(None),
            Err(StoreError::Manifest { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
