//! Keyed state behind one trait, partitioned by key group.
//!
//! Keys and values are bytes; the window operator owns their encoding, so every backend
//! gives byte-identical results. Backends: [`heap`] (a map per key group) and [`rocks`]
//! (RocksDB, keys prefixed by the big-endian key group so a range can be cut out).
//! Snapshots are written to local files ([`canonical`] format, or RocksDB's own files for
//! incremental checkpoints) that the checkpoint module uploads.

pub mod canonical;
pub mod heap;
pub mod rocks;

use std::ops::Range;
use std::path::{Path, PathBuf};

use rivulet_api::manifest::StateFileFormat;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("state i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt state file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// A state file written locally by [`StateBackend::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalStateFile {
    pub path: PathBuf,
    pub format: StateFileFormat,
    pub key_group_start: u32,
    pub key_group_end: u32,
    /// Files whose content never changes under this name (RocksDB SSTs): uploaded once and
    /// shared by later incremental snapshots.
    pub immutable: bool,
}

/// A visitor of state entries: (key group, key, value).
pub type EntryFn<'a> = dyn FnMut(u32, &[u8], &[u8]) + 'a;

/// Keyed state of the key groups this worker owns.
pub trait StateBackend: Send {
    fn get(&mut self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError>;
    /// Every entry, in (key group, key) order.
    fn for_each(&mut self, f: &mut EntryFn<'_>) -> Result<(), StateError>;
    /// Number of entries (exact for heap, estimated for RocksDB).
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes the whole state into files under `dir` (which exists and is empty).
    fn snapshot(&mut self, dir: &Path) -> Result<Vec<LocalStateFile>, StateError>;
    /// Replaces the state with the entries of `files` whose key group is in `range`.
    /// Canonical files are accepted by every backend.
    fn restore(&mut self, files: &[LocalStateFile], range: Range<u32>) -> Result<(), StateError>;
    /// Short name for manifests and logs (`heap`, `rocksdb`).
    fn name(&self) -> &'static str;
}
