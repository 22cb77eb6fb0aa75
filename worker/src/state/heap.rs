//! Heap state: one ordered map per key group, snapshotted in the canonical format.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use super::{canonical, LocalStateFile, StateBackend, StateError};
use rivulet_api::manifest::StateFileFormat;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// State for the key groups `range`, kept in memory.
pub struct HeapBackend {
    range: Range<u32>,
    groups: Vec<Map>,
    entries: u64,
}

impl HeapBackend {
    pub fn new(range: Range<u32>) -> Self {
        let groups = range.clone().map(|_| Map::new()).collect();
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
        if self
            .group(kg)
            .insert(key.to_vec(), value.to_vec())
            .is_none()
        {
            self.entries += 1;
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
            for (k, v) in g {
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
        let entries = self
            .groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.iter().map(move |(k, v)| (start + i as u32, k, v)));
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
