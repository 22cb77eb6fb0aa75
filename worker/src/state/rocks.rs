//! RocksDB state: one database per worker, keys prefixed by their key group.
//!
//! A state key `key` of key group `kg` is stored under `kg.to_be_bytes() ++ key`, so the
//! database's order is `(key group, key)` and the state of a range of key groups is one
//! contiguous key range that can be cut out with a range delete.
//!
//! Writes skip the write-ahead log: a worker that fails restores from its last checkpoint,
//! never from its local database, which is a scratch directory wiped on open.
//!
//! Snapshots are incremental. [`StateBackend::snapshot`] creates a RocksDB checkpoint (the
//! memtable is flushed, live SST files are hard-linked) and lists its files; SST files never
//! change under their name, so they are marked immutable and the uploader stores each once
//! and shares it between checkpoints. [`StateBackend::restore`] accepts either such files —
//! opening the database from them and cutting away the key groups outside the new range,
//! merging databases of several former workers when the job was scaled in — or canonical
//! files (savepoints, heap checkpoints).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, DBCompressionType, LogLevel, Options, ReadOptions, WriteBatch, WriteOptions,
    DB,
};

use super::{canonical, LocalStateFile, StateBackend, StateError};
use rivulet_api::manifest::StateFileFormat;

/// Name of the checkpoint directory [`StateBackend::snapshot`] creates in its target.
pub const CHECKPOINT_DIR: &str = "rocksdb";

/// Size of the write batches used to load state while restoring.
const RESTORE_BATCH_BYTES: usize = 4 << 20;
/// Memtable size: large enough to batch many updates of hot window state into one SST.
const WRITE_BUFFER_BYTES: usize = 32 << 20;
/// SST size target; smaller files make incremental checkpoints upload less per change.
const TARGET_FILE_BYTES: u64 = 32 << 20;
/// Size of the key-group prefix.
const PREFIX_LEN: usize = 4;

/// State for the key groups `range`, in a RocksDB database under a local directory.
pub struct RocksBackend {
    /// Directory this backend owns; databases live in numbered subdirectories.
    root: PathBuf,
    range: Range<u32>,
    db: OwnedDb,
    /// Number of the current database directory (`db-<n>`); a restore opens the next.
    generation: u64,
    write_opts: WriteOptions,
    /// Reused buffer for prefixed keys.
    key: Vec<u8>,
}

impl RocksBackend {
    /// Opens an empty database for the key groups `range` under `dir`, deleting whatever
    /// `dir` held.
    pub fn open(dir: &Path, range: Range<u32>) -> Result<Self, StateError> {
        if range.start > range.end {
            return Err(StateError::Io {
                path: dir.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("key-group range {range:?} starts after its end"),
                ),
            });
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(dir, e)),
        }
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let generation = 0;
        let db = OwnedDb::open(db_dir(dir, generation))?;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        tracing::debug!(dir = %dir.display(), ?range, "opened rocksdb state");
        Ok(RocksBackend {
            root: dir.to_owned(),
            range,
            db,
            generation,
            write_opts,
            key: Vec::new(),
        })
    }

    /// The key groups this backend holds.
    pub fn range(&self) -> Range<u32> {
        self.range.clone()
    }

    /// Directory of the live database.
    pub fn db_path(&self) -> &Path {
        &self.db.path
    }

    /// Opens a fresh database from `files`, without touching the live one.
    fn build_restored(
        &mut self,
        files: &[LocalStateFile],
        range: &Range<u32>,
    ) -> Result<OwnedDb, StateError> {
        let Some(first) = files.first() else {
            return OwnedDb::open(self.next_db_dir()?);
        };
        if let Some(other) = files.iter().find(|f| f.format != first.format) {
            return Err(StateError::Corrupt {
                path: other.path.clone(),
                reason: format!(
                    "snapshot mixes {:?} and {:?} state files",
                    first.format, other.format
                ),
            });
        }
        match first.format {
            StateFileFormat::Canonical => {
                let db = OwnedDb::open(self.next_db_dir()?)?;
                for file in files {
                    load_canonical(&db, file, range, &self.write_opts)?;
                }
                Ok(db)
            }
            StateFileFormat::RocksdbNative => self.restore_native(files, range),
        }
    }

    /// Restores from RocksDB checkpoint files, possibly of several databases (one per
    /// former key-group range): the one overlapping `range` most is opened in place and
    /// clipped to `range`, the in-range state of the others is copied into it.
    fn restore_native(
        &mut self,
        files: &[LocalStateFile],
        range: &Range<u32>,
    ) -> Result<OwnedDb, StateError> {
        let mut checkpoints: BTreeMap<(u32, u32), Vec<&LocalStateFile>> = BTreeMap::new();
        for f in files {
            checkpoints
                .entry((f.key_group_start, f.key_group_end))
                .or_default()
                .push(f);
        }
        for group in checkpoints.values() {
            check_checkpoint_files(group)?;
        }
        let overlap = |&(start, end): &(u32, u32)| {
            u64::from(end.min(range.end).saturating_sub(start.max(range.start)))
        };
        let mut useful: Vec<(u32, u32)> = checkpoints
            .keys()
            .copied()
            .filter(|k| overlap(k) > 0)
            .collect();
        // The largest overlap first; ties keep key-group order.
        useful.sort_by_key(|k| std::cmp::Reverse(overlap(k)));
        let Some((&base, others)) = useful.split_first() else {
            return OwnedDb::open(self.next_db_dir()?);
        };

        let db_dir = self.next_db_dir()?;
        materialize(&checkpoints[&base], &db_dir)?;
        let db = OwnedDb::open(db_dir)?;
        clip(&db, range, base, &self.write_opts)?;

        for (i, &source) in others.iter().enumerate() {
            let dir = self.root.join(format!("restore-{}-{i}", self.generation));
            remove_if_exists(&dir)?;
            materialize(&checkpoints[&source], &dir)?;
            let src = OwnedDb::open(dir)?;
            let from = source.0.max(range.start);
            let to = source.1.min(range.end);
            copy_range(&src, &db, from..to, &self.write_opts)?;
        }
        tracing::info!(
            path = %db.path.display(),
            ?range,
            checkpoints = checkpoints.len(),
            merged = others.len(),
            "restored rocksdb state from native files"
        );
        Ok(db)
    }

    /// Path for the next database; clears anything a crashed process left there.
    fn next_db_dir(&mut self) -> Result<PathBuf, StateError> {
        self.generation += 1;
        let dir = db_dir(&self.root, self.generation);
        remove_if_exists(&dir)?;
        Ok(dir)
    }
}

impl StateBackend for RocksBackend {
    fn get(&mut self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        encode_key(&mut self.key, kg, key);
        Ok(self.db.db().get_pinned(&self.key)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        encode_key(&mut self.key, kg, key);
        self.db.db().put_opt(&self.key, value, &self.write_opts)?;
        Ok(())
    }

    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError> {
        encode_key(&mut self.key, kg, key);
        self.db.db().delete_opt(&self.key, &self.write_opts)?;
        Ok(())
    }

    fn for_each(&mut self, f: &mut super::EntryFn<'_>) -> Result<(), StateError> {
        let mut opts = ReadOptions::default();
        // A full scan: keep the block cache for the hot keys.
        opts.fill_cache(false);
        opts.set_readahead_size(2 << 20);
        let mut it = self.db.db().raw_iterator_opt(opts);
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            let (kg, key) = decode_key(k).ok_or_else(|| StateError::Corrupt {
                path: self.db.path.clone(),
                reason: format!("key of {} bytes has no key-group prefix", k.len()),
            })?;
            f(kg, key, v);
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn len(&self) -> u64 {
        match self
            .db
            .db()
            .property_int_value(rocksdb::properties::ESTIMATE_NUM_KEYS)
        {
            Ok(n) => n.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "rocksdb estimate-num-keys unavailable");
                0
            }
        }
    }

    fn snapshot(&mut self, dir: &Path) -> Result<Vec<LocalStateFile>, StateError> {
        let db = self.db.db();
        // Writes skip the WAL, so everything must be in SSTs before the checkpoint.
        db.flush()?;
        let target = dir.join(CHECKPOINT_DIR);
        Checkpoint::new(db)?.create_checkpoint(&target)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(&target).map_err(|e| io_error(&target, e))? {
            let entry = entry.map_err(|e| io_error(&target, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
            if !kind.is_file() {
                return Err(StateError::Corrupt {
                    path,
                    reason: "rocksdb checkpoint holds something other than a file".into(),
                });
            }
            let immutable = is_immutable(&path);
            files.push(LocalStateFile {
                path,
                format: StateFileFormat::RocksdbNative,
                key_group_start: self.range.start,
                key_group_end: self.range.end,
                immutable,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        tracing::debug!(dir = %target.display(), files = files.len(), "rocksdb checkpoint");
        Ok(files)
    }

    fn restore(&mut self, files: &[LocalStateFile], range: Range<u32>) -> Result<(), StateError> {
        if range.start > range.end {
            return Err(StateError::Io {
                path: self.root.clone(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("key-group range {range:?} starts after its end"),
                ),
            });
        }
        // Built beside the live database and swapped in only when complete, so a failed
        // restore leaves the state as it was.
        let db = self.build_restored(files, &range)?;
        self.db = db;
        self.range = range;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "rocksdb"
    }
}

/// A database that deletes its directory when closed.
struct OwnedDb {
    /// `Some` until dropped.
    db: Option<DB>,
    path: PathBuf,
}

impl OwnedDb {
    fn open(path: PathBuf) -> Result<Self, StateError> {
        let db = DB::open(&db_options(), &path)?;
        Ok(OwnedDb { db: Some(db), path })
    }

    fn db(&self) -> &DB {
        self.db
            .as_ref()
            .expect("the database is open until the OwnedDb is dropped")
    }
}

impl Drop for OwnedDb {
    fn drop(&mut self) {
        drop(self.db.take());
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "could not remove a closed rocksdb directory");
            }
        }
    }
}

/// Options tuned for a streaming state store: point reads and writes of window state,
/// periodic full flushes by checkpoints.
fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Lz4);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_write_buffer_number(3);
    opts.set_target_file_size_base(TARGET_FILE_BYTES);
    opts.set_level_compaction_dynamic_level_bytes(true);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jobs = cores.clamp(2, 4) as i32;
    opts.increase_parallelism(jobs);
    opts.set_max_background_jobs(jobs);
    opts.set_log_level(LogLevel::Warn);
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(8 << 20);
    let mut table = BlockBasedOptions::default();
    // Window state is read by exact key: a Bloom filter spares most misses a disk read.
    table.set_bloom_filter(10.0, false);
    table.set_block_size(16 << 10);
    opts.set_block_based_table_factory(&table);
    opts
}

fn db_dir(root: &Path, generation: u64) -> PathBuf {
    root.join(format!("db-{generation}"))
}

fn encode_key(buf: &mut Vec<u8>, kg: u32, key: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&kg.to_be_bytes());
    buf.extend_from_slice(key);
}

fn decode_key(k: &[u8]) -> Option<(u32, &[u8])> {
    let (prefix, key) = k.split_first_chunk::<PREFIX_LEN>()?;
    Some((u32::from_be_bytes(*prefix), key))
}

/// SST (and blob) files are written once and never modified under their name.
fn is_immutable(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("sst" | "blob")
    )
}

/// One checkpoint's files must have distinct names and include `CURRENT`.
fn check_checkpoint_files(files: &[&LocalStateFile]) -> Result<(), StateError> {
    let mut names = HashSet::new();
    for f in files {
        let name = f.path.file_name().ok_or_else(|| StateError::Corrupt {
            path: f.path.clone(),
            reason: "rocksdb state file path has no file name".into(),
        })?;
        if !names.insert(name) {
            return Err(StateError::Corrupt {
                path: f.path.clone(),
                reason: format!(
                    "two rocksdb state files of key groups {}..{} share this name",
                    f.key_group_start, f.key_group_end
                ),
            });
        }
    }
    if !names.contains(std::ffi::OsStr::new("CURRENT")) {
        let f = files[0];
        return Err(StateError::Corrupt {
            path: f.path.clone(),
            reason: format!(
                "rocksdb checkpoint of key groups {}..{} has no CURRENT file",
                f.key_group_start, f.key_group_end
            ),
        });
    }
    Ok(())
}

/// Puts a checkpoint's files into `dir` under their own names: SSTs hard-linked when the
/// file system allows (they are never modified), everything else copied (RocksDB may
/// append to a MANIFEST it reopens).
fn materialize(files: &[&LocalStateFile], dir: &Path) -> Result<(), StateError> {
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    for f in files {
        let Some(name) = f.path.file_name() else {
            continue; // rejected by check_checkpoint_files
        };
        let dest = dir.join(name);
        if is_immutable(&f.path) && fs::hard_link(&f.path, &dest).is_ok() {
            continue;
        }
        fs::copy(&f.path, &dest).map_err(|e| io_error(&f.path, e))?;
    }
    Ok(())
}

/// Deletes every key outside `range` from a database restored from a checkpoint of the
/// key groups `held`; compacts what was cut so the space and key estimate follow.
fn clip(
    db: &OwnedDb,
    range: &Range<u32>,
    held: (u32, u32),
    write_opts: &WriteOptions,
) -> Result<(), StateError> {
    let start = range.start.to_be_bytes();
    let end = range.end.to_be_bytes();
    let last = u32::MAX.to_be_bytes();
    let db = db.db();
    let mut batch = WriteBatch::default();
    // From the empty key: nothing sorts before it.
    batch.delete_range(&[][..], &start[..]);
    batch.delete_range(&end[..], &last[..]);
    // Keys of key group u32::MAX sort after any exclusive bound; key groups never reach
    // it, but a clipped database must hold nothing outside its range.
    let mut it = db.raw_iterator();
    it.seek(last);
    while let Some(k) = it.key() {
        batch.delete(k);
        it.next();
    }
    it.status()?;
    drop(it);
    db.write_opt(batch, write_opts)?;
    if held.0 < range.start {
        db.compact_range(None::<&[u8]>, Some(&start[..]));
    }
    if held.1 > range.end {
        db.compact_range(Some(&end[..]), None::<&[u8]>);
    }
    Ok(())
}

/// Copies the entries of the key groups `range` from `src` into `dst`.
fn copy_range(
    src: &OwnedDb,
    dst: &OwnedDb,
    range: Range<u32>,
    write_opts: &WriteOptions,
) -> Result<(), StateError> {
    let mut opts = ReadOptions::default();
    opts.fill_cache(false);
    opts.set_readahead_size(2 << 20);
    opts.set_iterate_upper_bound(range.end.to_be_bytes());
    let mut it = src.db().raw_iterator_opt(opts);
    it.seek(range.start.to_be_bytes());
    let mut batch = WriteBatch::default();
    while let Some((k, v)) = it.item() {
        batch.put(k, v);
        if batch.size_in_bytes() >= RESTORE_BATCH_BYTES {
            dst.db().write_opt(std::mem::take(&mut batch), write_opts)?;
        }
        it.next();
    }
    it.status()?;
    dst.db().write_opt(batch, write_opts)?;
    Ok(())
}

/// Loads the entries of the key groups `range` of a canonical file into `db`.
fn load_canonical(
    db: &OwnedDb,
    file: &LocalStateFile,
    range: &Range<u32>,
    write_opts: &WriteOptions,
) -> Result<(), StateError> {
    let db = db.db();
    let mut batch = WriteBatch::default();
    let mut key = Vec::new();
    let mut failed = None;
    canonical::read_file(&file.path, range.clone(), &mut |kg, k, v| {
        if failed.is_some() {
            return;
        }
        encode_key(&mut key, kg, k);
        batch.put(&key, v);
        if batch.size_in_bytes() >= RESTORE_BATCH_BYTES {
            if let Err(e) = db.write_opt(std::mem::take(&mut batch), write_opts) {
                failed = Some(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    db.write_opt(batch, write_opts)?;
    Ok(())
}

fn remove_if_exists(dir: &Path) -> Result<(), StateError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(dir, e)),
    }
}

fn io_error(path: &Path, source: io::Error) -> StateError {
    StateError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::heap::HeapBackend;

    type Entry = (u32, Vec<u8>, Vec<u8>);

    fn dump(b: &mut dyn StateBackend) -> Vec<Entry> {
        let mut out = Vec::new();
        b.for_each(&mut |kg, k, v| out.push((kg, k.to_vec(), v.to_vec())))
            .unwrap();
        out
    }

    /// Deterministic pseudo-random numbers (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// The same puts, overwrites and deletes on every backend given.
    fn apply_ops(backends: &mut [&mut dyn StateBackend], range: Range<u32>, n: usize, seed: u64) {
        let mut rng = Rng(seed);
        let width = u64::from(range.end - range.start);
        for _ in 0..n {
            let kg = range.start + (rng.next() % width) as u32;
            let key = format!("k{}", rng.next() % 300).into_bytes();
            let op = rng.next() % 10;
            let value = format!("v{}", rng.next()).into_bytes();
            for b in backends.iter_mut() {
                if op < 7 {
                    b.put(kg, &key, &value).unwrap();
                } else {
                    b.delete(kg, &key).unwrap();
                }
            }
        }
    }

    fn fill(b: &mut dyn StateBackend, range: Range<u32>, per_group: usize, tag: &str) {
        for kg in range {
            for i in 0..per_group {
                let key = format!("key-{i:05}").into_bytes();
                let value = format!("{tag}-{kg}-{i}-{}", "x".repeat(i % 50)).into_bytes();
                b.put(kg, &key, &value).unwrap();
            }
        }
    }

    fn sst_names(files: &[LocalStateFile]) -> HashSet<String> {
        files
            .iter()
            .filter(|f| f.immutable)
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn heap_and_rocks_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut rocks = RocksBackend::open(dir.path(), 8..24).unwrap();
        let mut heap = HeapBackend::new(8..24);
        apply_ops(&mut [&mut rocks, &mut heap], 8..24, 5000, 7);
        let expected = dump(&mut heap);
        assert!(expected.len() > 1000);
        assert_eq!(dump(&mut rocks), expected);
        for (kg, k, v) in expected.iter().take(200) {
            assert_eq!(rocks.get(*kg, k).unwrap().as_ref(), Some(v));
        }
        assert_eq!(rocks.get(8, b"absent").unwrap(), None);
        assert!(!rocks.is_empty());
        assert_eq!(rocks.name(), "rocksdb");
        // Empty keys and values, and keys that would collide without the prefix.
        rocks.put(9, b"", b"").unwrap();
        rocks.put(10, b"", b"x").unwrap();
        assert_eq!(rocks.get(9, b"").unwrap(), Some(Vec::new()));
        assert_eq!(rocks.get(10, b"").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn snapshot_restore_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = RocksBackend::open(&dir.path().join("a"), 0..16).unwrap();
        apply_ops(&mut [&mut a], 0..16, 3000, 11);
        let expected = dump(&mut a);
        let snap = dir.path().join("snap");
        fs::create_dir(&snap).unwrap();
        let files = a.snapshot(&snap).unwrap();
        assert!(files.iter().any(|f| f.immutable));
        assert!(files
            .iter()
            .any(|f| !f.immutable && f.path.ends_with("CURRENT")));
        for f in &files {
            assert_eq!(f.format, StateFileFormat::RocksdbNative);
            assert_eq!((f.key_group_start, f.key_group_end), (0, 16));
            assert_eq!(f.immutable, f.path.extension().is_some_and(|e| e == "sst"));
        }

        // The source keeps working after its snapshot.
        a.put(3, b"after", b"snapshot").unwrap();

        let mut b = RocksBackend::open(&dir.path().join("b"), 0..16).unwrap();
        b.put(1, b"stale", b"dropped by restore").unwrap();
        b.restore(&files, 0..16).unwrap();
        assert_eq!(dump(&mut b), expected);
        // The restored database is writable and snapshots again.
        b.put(5, b"new", b"value").unwrap();
        assert_eq!(b.get(5, b"new").unwrap(), Some(b"value".to_vec()));
        let snap2 = dir.path().join("snap2");
        fs::create_dir(&snap2).unwrap();
        assert!(!b.snapshot(&snap2).unwrap().is_empty());
    }

    #[test]
    fn incremental_snapshots_share_sst_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = RocksBackend::open(&dir.path().join("db"), 0..8).unwrap();
        fill(&mut db, 0..8, 2000, "first");
        let s1 = dir.path().join("s1");
        fs::create_dir(&s1).unwrap();
        let first = db.snapshot(&s1).unwrap();

        db.put(2, b"key-00010", b"changed").unwrap();
        db.delete(5, b"key-00020").unwrap();
        let s2 = dir.path().join("s2");
        fs::create_dir(&s2).unwrap();
        let second = db.snapshot(&s2).unwrap();

        let shared: Vec<String> = sst_names(&first)
            .intersection(&sst_names(&second))
            .cloned()
            .collect();
        assert!(!shared.is_empty(), "{first:?}\n{second:?}");
        for name in &shared {
            assert_eq!(
                fs::read(s1.join(CHECKPOINT_DIR).join(name)).unwrap(),
                fs::read(s2.join(CHECKPOINT_DIR).join(name)).unwrap(),
                "{name} changed between snapshots"
            );
        }
        // The second snapshot alone restores the latest state.
        let expected = dump(&mut db);
        let mut restored = RocksBackend::open(&dir.path().join("r"), 0..8).unwrap();
        restored.restore(&second, 0..8).unwrap();
        assert_eq!(dump(&mut restored), expected);
        assert_eq!(
            restored.get(2, b"key-00010").unwrap(),
            Some(b"changed".to_vec())
        );
        assert_eq!(restored.get(5, b"key-00020").unwrap(), None);
    }

    #[test]
    fn narrower_restore_drops_other_key_groups() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = RocksBackend::open(&dir.path().join("a"), 0..8).unwrap();
        fill(&mut a, 0..8, 300, "a");
        let all = dump(&mut a);
        let snap = dir.path().join("snap");
        fs::create_dir(&snap).unwrap();
        let files = a.snapshot(&snap).unwrap();

        let mut b = RocksBackend::open(&dir.path().join("b"), 2..5).unwrap();
        b.restore(&files, 2..5).unwrap();
        let expected: Vec<Entry> = all.into_iter().filter(|e| (2..5).contains(&e.0)).collect();
        assert_eq!(dump(&mut b), expected);
        assert_eq!(b.range(), 2..5);
        assert_eq!(b.get(0, b"key-00001").unwrap(), None);
        assert_eq!(b.get(7, b"key-00001").unwrap(), None);
        assert!(b.get(3, b"key-00001").unwrap().is_some());
        // The estimate follows the cut (the cut ranges were compacted away).
        assert!(b.len() <= 3 * 300 + 50, "len {}", b.len());
    }

    #[test]
    fn scale_in_merges_checkpoints_of_several_workers() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        let mut expected = Vec::new();
        for (i, range) in [0..3u32, 3..6, 6..8].into_iter().enumerate() {
            let mut w =
                RocksBackend::open(&dir.path().join(format!("w{i}")), range.clone()).unwrap();
            fill(&mut w, range.clone(), 100 + 50 * i, &format!("w{i}"));
            expected.extend(dump(&mut w));
            let snap = dir.path().join(format!("snap{i}"));
            fs::create_dir(&snap).unwrap();
            files.extend(w.snapshot(&snap).unwrap());
        }
        let mut merged = RocksBackend::open(&dir.path().join("m"), 1..8).unwrap();
        merged.restore(&files, 1..8).unwrap();
        let expected: Vec<Entry> = expected.into_iter().filter(|e| e.0 >= 1).collect();
        assert_eq!(dump(&mut merged), expected);
    }

    #[test]
    fn cross_backend_restores_through_canonical_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut rocks = RocksBackend::open(&dir.path().join("r"), 0..16).unwrap();
        apply_ops(&mut [&mut rocks], 0..16, 4000, 3);
        let original = dump(&mut rocks);

        // RocksDB → canonical savepoint → heap.
        let savepoint = dir.path().join("savepoint.kg");
        let stats = canonical::export(&mut rocks, 0..16, &savepoint).unwrap();
        assert_eq!(stats.entries, original.len() as u64);
        let file = LocalStateFile {
            path: savepoint,
            format: StateFileFormat::Canonical,
            key_group_start: 0,
            key_group_end: 16,
            immutable: false,
        };
        let mut heap = HeapBackend::new(0..16);
        heap.restore(std::slice::from_ref(&file), 0..16).unwrap();
        assert_eq!(dump(&mut heap), original);

        // Heap checkpoint → RocksDB, at a narrower range.
        let snap = dir.path().join("heap-snap");
        fs::create_dir(&snap).unwrap();
        let heap_files = heap.snapshot(&snap).unwrap();
        let mut back = RocksBackend::open(&dir.path().join("back"), 4..12).unwrap();
        back.restore(&heap_files, 4..12).unwrap();
        let expected: Vec<Entry> = original
            .into_iter()
            .filter(|e| (4..12).contains(&e.0))
            .collect();
        assert_eq!(dump(&mut back), expected);
    }

    #[test]
    fn mixed_formats_are_rejected_and_failed_restores_keep_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = RocksBackend::open(&dir.path().join("a"), 0..4).unwrap();
        fill(&mut a, 0..4, 10, "a");
        let before = dump(&mut a);
        let snap = dir.path().join("snap");
        fs::create_dir(&snap).unwrap();
        let mut files = a.snapshot(&snap).unwrap();
        let canonical_path = dir.path().join("c.kg");
        canonical::export(&mut a, 0..4, &canonical_path).unwrap();
        files.push(LocalStateFile {
            path: canonical_path.clone(),
            format: StateFileFormat::Canonical,
            key_group_start: 0,
            key_group_end: 4,
            immutable: false,
        });
        assert!(matches!(
            a.restore(&files, 0..4),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(dump(&mut a), before);

        // A damaged canonical file fails the restore and leaves the state alone.
        let mut bytes = fs::read(&canonical_path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&canonical_path, &bytes).unwrap();
        let broken = files.pop().unwrap();
        assert!(matches!(
            a.restore(&[broken], 0..4),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(dump(&mut a), before);

        // A checkpoint without CURRENT is rejected.
        files.retain(|f| !f.path.ends_with("CURRENT"));
        assert!(matches!(
            a.restore(&files, 0..4),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(dump(&mut a), before);

        // No files: empty state.
        a.restore(&[], 0..4).unwrap();
        assert!(dump(&mut a).is_empty());
    }

    #[test]
    fn open_wipes_the_directory_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        fs::create_dir_all(root.join("junk")).unwrap();
        fs::write(root.join("junk/file"), b"old").unwrap();
        let mut db = RocksBackend::open(&root, 0..2).unwrap();
        assert!(!root.join("junk").exists());
        db.put(0, b"k", b"v").unwrap();
        let path = db.db_path().to_owned();
        assert!(path.exists());
        drop(db);
        assert!(!path.exists());
        let mut again = RocksBackend::open(&root, 0..2).unwrap();
        assert!(dump(&mut again).is_empty());
    }
}
