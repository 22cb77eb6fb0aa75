//! Watermarks over the partitions one source reads (Flink's bounded out-of-orderness): each
//! partition's watermark is the highest event time it has seen minus `maxOutOfOrderness`
//! minus 1 ms, and the source's watermark is the minimum over its partitions, leaving out
//! those idle for longer than `idleTimeout`. It never goes back.
//!
//! Pure: the caller passes the processing time (`now_ms`, epoch ms) in.

use std::collections::HashMap;
use std::sync::Arc;

/// Bounded out-of-orderness watermarks over the partitions one source reads.
///
/// `observe` and `current` are called per record and are cheap: the minimum over partitions
/// is cached and recomputed only when the partition holding it advances or the set of
/// active partitions changes; idleness is checked only when the earliest idle deadline
/// passes.
#[derive(Clone, Debug)]
pub struct WatermarkTracker {
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: Option<i64>,
    /// topic → partition → index into `partitions`.
    index: HashMap<Arc<str>, HashMap<i32, usize>>,
    partitions: Vec<PartitionState>,
    /// The floor every partition starts from after [`WatermarkTracker::restore`], as a max
    /// event time.
    restored_max_ts: Option<i64>,
    /// The highest watermark returned so far.
    emitted: Option<i64>,
    /// Cached min of `max_ts` over active partitions: `None` = some active partition has
    /// seen nothing, or no partition is active (see `active`).
    cached_min: Option<i64>,
    /// Number of active partitions when `cached_min` was computed.
    active: usize,
    /// `cached_min`/`active` must be recomputed.
    dirty: bool,
    /// No active partition can turn idle before this processing time.
    next_idle_check: i64,
    /// Index of the partition `observe` saw last.
    last_hit: Option<usize>,
}

#[derive(Clone, Debug)]
struct PartitionState {
    topic: Arc<str>,
    partition: i32,
    /// Highest event time seen (or the restored floor).
    max_ts: Option<i64>,
    /// Processing time of the last record, or of the assignment.
    last_active_ms: i64,
    idle: bool,
}

impl WatermarkTracker {
    /// `idle_timeout_ms`: partitions with no record for this long stop holding the watermark
    /// back until their next record. `None` (or a negative value) disables idleness.
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: Option<i64>) -> WatermarkTracker {
        WatermarkTracker {
            max_out_of_orderness_ms: max_out_of_orderness_ms.max(0),
            idle_timeout_ms: idle_timeout_ms.filter(|t| *t >= 0),
            index: HashMap::new(),
            partitions: Vec::new(),
            restored_max_ts: None,
            emitted: None,
            cached_min: None,
            active: 0,
            dirty: true,
            next_idle_check: i64::MAX,
            last_hit: None,
        }
    }

    /// Sets the partitions this source reads. Partitions already assigned keep their state;
    /// new ones start with nothing seen (or the restored floor) and count as active from
    /// `now_ms`; partitions not listed are dropped.
    pub fn assign(&mut self, partitions: &[(Arc<str>, i32)], now_ms: i64) {
        let mut old: HashMap<(Arc<str>, i32), PartitionState> = self
            .partitions
            .drain(..)
            .map(|p| ((p.topic.clone(), p.partition), p))
            .collect();
        self.index.clear();
        self.last_hit = None;
        for (topic, partition) in partitions {
            let key = (topic.clone(), *partition);
            if self
                .index
                .get(&**topic)
                .is_some_and(|m| m.contains_key(partition))
            {
                continue; // listed twice
            }
            let state = old.remove(&key).unwrap_or_else(|| PartitionState {
                topic: topic.clone(),
                partition: *partition,
                max_ts: self.restored_max_ts,
                last_active_ms: now_ms,
                idle: false,
            });
            self.insert(state);
        }
        self.dirty = true;
        self.next_idle_check = i64::MIN;
    }

    fn insert(&mut self, state: PartitionState) -> usize {
        let i = self.partitions.len();
        self.index
            .entry(state.topic.clone())
            .or_default()
            .insert(state.partition, i);
        self.partitions.push(state);
        i
    }

    /// Records an event time read from `(topic, partition)` at processing time `now_ms`.
    /// A partition that was not assigned is added.
    pub fn observe(&mut self, topic: &str, partition: i32, ts: i64, now_ms: i64) {
        // Records arrive in runs per partition: try the last one before hashing.
        let last = self.last_hit.filter(|&i| {
            self.partitions
                .get(i)
                .is_some_and(|p| p.partition == partition && *p.topic == *topic)
        });
        let found = last.or_else(|| self.index.get(topic)?.get(&partition).copied());
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.insert(PartitionState {
                    topic: Arc::from(topic),
                    partition,
                    max_ts: self.restored_max_ts,
                    last_active_ms: now_ms,
                    idle: false,
                });
                self.dirty = true;
                i
            }
        };
        self.last_hit = Some(i);
        let p = &mut self.partitions[i];
        p.last_active_ms = p.last_active_ms.max(now_ms);
        if p.idle {
            p.idle = false;
            self.dirty = true;
        }
        if let Some(timeout) = self.idle_timeout_ms {
            self.next_idle_check = self
                .next_idle_check
                .min(p.last_active_ms.saturating_add(timeout));
        }
        match p.max_ts {
            Some(max) if ts <= max => {}
            old => {
                p.max_ts = Some(ts);
                // The cached min only moves when the partition holding it (or one that had
                // seen nothing) advances.
                if old.is_none() || old == self.cached_min {
                    self.dirty = true;
                }
            }
        }
    }

    /// The source's watermark at processing time `now_ms`: `None` until every active
    /// partition has seen a record. Never decreases.
    pub fn current(&mut self, now_ms: i64) -> Option<i64> {
        self.check_idle(now_ms);
        if self.dirty {
            self.recompute();
        }
        if self.active > 0 {
            if let Some(min) = self.cached_min {
                let wm = min
                    .saturating_sub(self.max_out_of_orderness_ms)
                    .saturating_sub(1);
                if self.emitted.is_none_or(|e| wm > e) {
                    self.emitted = Some(wm);
                }
            }
        }
        self.emitted
    }

    /// Whether no partition holds the watermark back: none assigned, or all idle. The
    /// runtime can then mark this source idle downstream (as Flink does).
    pub fn is_idle(&mut self, now_ms: i64) -> bool {
        self.check_idle(now_ms);
        if self.dirty {
            self.recompute();
        }
        self.active == 0
    }

    /// After a restore from a checkpoint whose watermark was `watermark`: every partition
    /// (assigned now or later) starts as if it had seen `watermark + maxOutOfOrderness + 1`,
    /// so the watermark never drops below the restored one.
    pub fn restore(&mut self, watermark: i64) {
        let floor = watermark
            .saturating_add(self.max_out_of_orderness_ms)
            .saturating_add(1);
        self.restored_max_ts = Some(self.restored_max_ts.map_or(floor, |f| f.max(floor)));
        for p in &mut self.partitions {
            p.max_ts = Some(p.max_ts.map_or(floor, |m| m.max(floor)));
        }
        if self.emitted.is_none_or(|e| watermark > e) {
            self.emitted = Some(watermark);
        }
        self.dirty = true;
    }

    /// Marks partitions idle whose last record is older than the idle timeout.
    fn check_idle(&mut self, now_ms: i64) {
        let Some(timeout) = self.idle_timeout_ms else {
            return;
        };
        if now_ms < self.next_idle_check {
            return;
        }
        let mut next = i64::MAX;
        for p in &mut self.partitions {
            if p.idle {
                continue;
            }
            let deadline = p.last_active_ms.saturating_add(timeout);
            if now_ms >= deadline {
                p.idle = true;
                self.dirty = true;
            } else {
                next = next.min(deadline);
            }
        }
        self.next_idle_check = next;
    }

    fn recompute(&mut self) {
        let mut active = 0;
        let mut min: Option<i64> = None;
        let mut unseen = false;
        for p in self.partitions.iter().filter(|p| !p.idle) {
            active += 1;
            match p.max_ts {
                Some(ts) => min = Some(min.map_or(ts, |m| m.min(ts))),
                None => unseen = true,
            }
        }
        self.active = active;
        self.cached_min = if unseen { None } else { min };
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(ps: &[(&str, i32)]) -> Vec<(Arc<str>, i32)> {
        ps.iter().map(|(t, p)| (Arc::from(*t), *p)).collect()
    }

    #[test]
    fn watermark_is_min_over_partitions_minus_bound() {
        let mut w = WatermarkTracker::new(100, None);
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        assert_eq!(w.current(0), None);
        w.observe("in", 0, 1_000, 0);
        // Partition 1 has seen nothing: it holds the watermark back.
        assert_eq!(w.current(10), None);
        w.observe("in", 1, 500, 0);
        assert_eq!(w.current(10), Some(399));
        w.observe("in", 1, 2_000, 0);
        assert_eq!(w.current(10), Some(899));
        // Out-of-order records do not move anything back.
        w.observe("in", 0, 10, 0);
        assert_eq!(w.current(10), Some(899));
        w.observe("in", 0, 3_000, 0);
        assert_eq!(w.current(10), Some(1_899));
        assert!(!w.is_idle(10));
    }

    #[test]
    fn idle_partitions_are_excluded_and_come_back() {
        let mut w = WatermarkTracker::new(0, Some(1_000));
        w.assign(&parts(&[("a", 0), ("a", 1), ("b", 0)]), 0);
        w.observe("a", 0, 5_000, 100);
        w.observe("a", 1, 6_000, 100);
        // ("b", 0) has seen nothing and is not idle yet: it holds the watermark back.
        assert_eq!(w.current(500), None);
        // After the timeout it no longer does.
        assert_eq!(w.current(1_000), Some(4_999));
        // ("a", 1) keeps receiving; ("a", 0) goes quiet and turns idle at 1_100.
        w.observe("a", 1, 8_000, 1_050);
        assert_eq!(w.current(1_050), Some(4_999));
        assert_eq!(w.current(1_100), Some(7_999));
        // ("a", 0) comes back behind: it holds the watermark again, which does not regress.
        w.observe("a", 0, 7_000, 1_200);
        assert_eq!(w.current(1_200), Some(7_999));
        w.observe("a", 0, 9_000, 1_300);
        assert_eq!(w.current(1_300), Some(7_999));
        w.observe("a", 1, 9_500, 1_300);
        assert_eq!(w.current(1_300), Some(8_999));
        // Everyone idle: the watermark stays where it was.
        assert!(!w.is_idle(2_000));
        assert!(w.is_idle(2_300));
        assert_eq!(w.current(10_000), Some(8_999));
        // A record reactivates its partition.
        w.observe("b", 0, 20_000, 10_000);
        assert!(!w.is_idle(10_000));
        assert_eq!(w.current(10_000), Some(19_999));
    }

    #[test]
    fn restore_sets_a_floor() {
        let mut w = WatermarkTracker::new(50, None);
        w.restore(10_000);
        assert_eq!(w.current(0), Some(10_000));
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        assert_eq!(w.current(0), Some(10_000));
        // Old records after restore do not drag it back.
        w.observe("in", 0, 5_000, 0);
        assert_eq!(w.current(0), Some(10_000));
        w.observe("in", 0, 20_000, 0);
        assert_eq!(w.current(0), Some(10_000));
        w.observe("in", 1, 30_000, 0);
        assert_eq!(w.current(0), Some(19_949));

        // Restore after assignment works too.
        let mut w = WatermarkTracker::new(0, None);
        w.assign(&parts(&[("in", 0)]), 0);
        w.restore(700);
        assert_eq!(w.current(0), Some(700));
        w.observe("in", 0, 800, 0);
        assert_eq!(w.current(0), Some(799));
    }

    #[test]
    fn reassignment_keeps_and_drops_partitions() {
        let mut w = WatermarkTracker::new(0, None);
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        w.observe("in", 0, 100, 0);
        w.observe("in", 1, 50, 0);
        assert_eq!(w.current(0), Some(49));
        w.assign(&parts(&[("in", 0), ("in", 0)]), 0);
        assert_eq!(w.current(0), Some(99));
        // An unassigned partition that shows up is tracked.
        w.observe("other", 3, 500, 0);
        assert_eq!(w.current(0), Some(99));
        w.observe("in", 0, 1_000, 0);
        assert_eq!(w.current(0), Some(499));
        // No partitions: idle, and the watermark stays.
        w.assign(&[], 0);
        assert!(w.is_idle(0));
        assert_eq!(w.current(0), Some(499));
    }

    #[test]
    fn cached_min_matches_a_naive_computation() {
        // A deterministic pseudo-random interleaving over 5 partitions.
        let mut w = WatermarkTracker::new(7, None);
        let ps = parts(&[("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)]);
        w.assign(&ps, 0);
        let mut max = [i64::MIN; 5];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut best: Option<i64> = None;
        for step in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % 5) as usize;
            let ts = step as i64 * 3 + (seed >> 8) as i64 % 200 - 100;
            w.observe(&ps[i].0, ps[i].1, ts, 0);
            max[i] = max[i].max(ts);
            let naive = if max.contains(&i64::MIN) {
                None
            } else {
                max.iter().min().map(|m| m - 8)
            };
            if let Some(n) = naive {
                best = Some(best.map_or(n, |b: i64| b.max(n)));
            }
            assert_eq!(w.current(0), best, "step {step}");
        }
    }
}
