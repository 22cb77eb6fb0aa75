//! Savepoint retention: keep the newest `savepoints.maxCount`, delete those older than
//! `savepoints.maxAge`, and never delete the newest completed savepoint, the one the last
//! stable deployment restored (a rollback restores it), or the one the current deployment
//! restored.

use std::collections::BTreeSet;

use crate::plan::{Action, Planner};

impl Planner<'_> {
    pub(crate) fn retention(&mut self) {
        let savepoints = &self.obs.snapshots.savepoints;
        let Some(newest) = savepoints.iter().map(|s| s.id).max() else {
            return;
        };
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        keep.extend(self.status.stable_savepoint.as_deref());
        if let Some(d) = &self.status.deployment {
            keep.extend(d.restore_from.as_deref());
        }
        let max_count = self.spec.savepoints.max_count.max(1) as usize;
        let max_age = self.spec.savepoints.max_age.map(|a| a.as_millis_i64());
        let mut newest_first: Vec<_> = savepoints.iter().collect();
        newest_first.sort_by_key(|s| std::cmp::Reverse(s.id));
        let mut deleted = Vec::new();
        for (rank, s) in newest_first.into_iter().enumerate() {
            if s.id == newest || keep.contains(s.path.as_str()) {
                continue;
            }
            let too_many = rank >= max_count;
            let too_old = max_age.is_some_and(|age| self.obs.now_ms - s.time_ms > age);
            if too_many || too_old {
                deleted.push((s.id, s.path.clone(), too_many));
            }
        }
        for (id, path, too_many) in deleted {
            self.event(
                "SavepointDeleted",
                format!(
                    "savepoint {id} deleted ({}): {path}",
                    if too_many {
                        "beyond savepoints.maxCount"
                    } else {
                        "older than savepoints.maxAge"
                    }
                ),
            );
            self.status.savepoints.retain(|r| r.id != id);
            self.actions.push(Action::DeleteSavepoint { id, path });
        }
    }
}
