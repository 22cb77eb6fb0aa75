//! Heap state: one hash map per key group, snapshotted in the canonical format.
//!
//! Reads and writes are on the per-record path, so the maps are unordered (a fixed-seed
//! foldhash); the (key group, key) order that snapshots and [`StateBackend::for_each`]
//! promise is made by sorting each group's keys when it is walked, once per checkpoint.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use foldhash::fast::FixedState;

use super::{canonical, LocalStateFile, StateBackend, StateError};
use rivulet_api::manifest::StateFileFormat;

type Map = HashMap<Vec<u8>, Vec<u8>, FixedState>;

/// A group's entries in key order.
fn sorted(g: &Map) -> Vec<(&Vec<u8>, &Vec<u8>)> {
    let mut entries: Vec<_> = g.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// State for the key groups `range`, kept in memory.
pub struct HeapBackend {
    range: Range<u32>,
    groups: Vec<Map>,
    entries: u64,
}

impl HeapBackend {
    pub fn new(range: Range<u32>) -> Self {
        let groups = range.clone().map(|_| Map::default()).collect();
        HeapBackend {
            range,
            groups,
            entries: 0,
        }
    }

    fn group(&mut self, kg: u32) -> &mut Map {
        debug_assert!(
            self.range.contains(&kg),
            "key group {kg} outside {:?}",
            self.range
        );
        let idx = (kg - self.range.start) as usize;
        &mut self.groups[idx]
    }
}

impl StateBackend for HeapBackend {
    fn get(&mut self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.group(kg).get(key).cloned())
    }

    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let group = self.group(kg);
        match group.get_mut(key) {
            Some(v) => {
                // Overwrites reuse the value's buffer.
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                group.insert(key.to_vec(), value.to_vec());
                self.entries += 1;
            }
        }
        Ok(())
    }

    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), StateError> {
        if self.group(kg).remove(key).is_some() {
            self.entries -= 1;
        }
        Ok(())
    }

    fn for_each(&mut self, f: &mut super::EntryFn<'_>) -> Result<(), StateError> {
        for (i, g) in self.groups.iter().enumerate() {
            let kg = self.range.start + i as u32;
            for (k, v) in sorted(g) {
                f(kg, k, v);
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.entries
    }

    fn snapshot(&mut self, dir: &Path) -> Result<Vec<LocalStateFile>, StateError> {
        let path = dir.join(format!("state-{}-{}.kg", self.range.start, self.range.end));
        let start = self.range.start;
        let entries = self.groups.iter().enumerate().flat_map(|(i, g)| {
            sorted(g)
                .into_iter()
                .map(move |(k, v)| (start + i as u32, k, v))
        });
        canonical::write_file(&path, self.range.clone(), entries)?;
        Ok(vec![LocalStateFile {
            path,
            format: StateFileFormat::Canonical,
            key_group_start: self.range.start,
            key_group_end: self.range.end,
            immutable: false,
        }])
    }

    fn restore(&mut self, files: &[LocalStateFile], range: Range<u32>) -> Result<(), StateError> {
        // Loaded aside and swapped in only when complete, so a failed restore leaves the
        // state as it was.
        let mut restored = HeapBackend::new(range.clone());
        for f in files {
            if f.format != StateFileFormat::Canonical {
                return Err(StateError::Corrupt {
                    path: f.path.clone(),
                    reason: "the heap backend restores canonical state files only".into(),
                });
            }
            canonical::read_file(&f.path, range.clone(), &mut |kg, k, v| {
                if restored.group(kg).insert(k.to_vec(), v.to_vec()).is_none() {
                    restored.entries += 1;
                }
            })?;
        }
        *self = restored;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "heap"
    }
}
