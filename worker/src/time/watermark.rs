//! Watermarks over the partitions one source reads (Flink's bounded out-of-orderness).
//!
//! Each partition's watermark is the highest event time it has seen minus
//! `maxOutOfOrderness` minus 1 ms; the source's watermark is the minimum over its partitions,
//! leaving out the idle ones, and never goes back.
//!
//! - **Idleness** is about records *waiting*, not about time since the last record. A
//!   partition turns idle only when the source reports it caught up (it has read everything
//!   up to the end the broker last reported, see [`Backlog`]) and no record has come from it
//!   for `idleTimeout`. A partition with records waiting, or whose backlog is not known,
//!   holds the watermark back however slowly it is read. An idle partition is active again
//!   at its next record, or as soon as the source reports records waiting in it. When every
//!   partition is idle (everything is read), the watermark is the minimum over the
//!   partitions that have delivered an event time: the same whichever partition turned idle
//!   first, so an empty partition never decides the result by when it is reported.
//! - **Restore** continues where the snapshot left off, as if the job had never stopped:
//!   every partition gets back the highest event time it had seen ([`PartitionMark`], kept
//!   with its offset in the snapshot), and none drops below the restored watermark.
//!
//! Pure: the caller passes the processing time (`now_ms`, epoch ms) in.

use std::collections::HashMap;
use std::sync::Arc;

/// What the source knows of a partition's unread records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backlog {
    /// No fetch response has told yet.
    #[default]
    Unknown,
    /// Records are waiting: the partition's end is past what has been read, or it is
    /// paused.
    Waiting,
    /// Everything up to the partition's end (its last stable offset when reading committed)
    /// has been read.
    CaughtUp,
}

impl Backlog {
    /// The name in `/status`.
    pub fn name(&self) -> &'static str {
        match self {
            Backlog::Unknown => "unknown",
            Backlog::Waiting => "waiting",
            Backlog::CaughtUp => "caughtUp",
        }
    }
}

/// One partition's event-time position: what a snapshot keeps and `/status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMark {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The highest event time read from it (`None`: nothing yet).
    pub max_event_time: Option<i64>,
    /// Its watermark: `max_event_time - maxOutOfOrderness - 1`.
    pub watermark: Option<i64>,
    pub backlog: Backlog,
    pub idle: bool,
}

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
    /// The lowest max event time any partition starts from after a restore: the restored
    /// watermark plus the bound, so the watermark never drops below the restored one.
    floor: Option<i64>,
    /// The highest watermark returned so far.
    emitted: Option<i64>,
    /// Cached min of `max_ts` over active partitions: `None` = some active partition has
    /// seen nothing, or no partition is active (see `active`).
    cached_min: Option<i64>,
    /// When every partition is idle: the lowest highest-event-time of the partitions that
    /// have delivered one.
    idle_min: Option<i64>,
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
    /// Highest event time seen (or restored).
    max_ts: Option<i64>,
    /// Processing time of the last record, or of the assignment.
    last_active_ms: i64,
    backlog: Backlog,
    idle: bool,
}

impl WatermarkTracker {
    /// `idle_timeout_ms`: a caught-up partition with no record for this long stops holding
    /// the watermark back until its next record (or until records wait in it again). `None`
    /// (or a negative value) disables idleness.
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: Option<i64>) -> WatermarkTracker {
        WatermarkTracker {
            max_out_of_orderness_ms: max_out_of_orderness_ms.max(0),
            idle_timeout_ms: idle_timeout_ms.filter(|t| *t >= 0),
            index: HashMap::new(),
            partitions: Vec::new(),
            floor: None,
            emitted: None,
            cached_min: None,
            idle_min: None,
            active: 0,
            dirty: true,
            next_idle_check: i64::MAX,
            last_hit: None,
        }
    }

    /// Sets the partitions this source reads. Partitions already assigned keep their state;
    /// new ones start with nothing seen (or the restored floor), their backlog unknown, and
    /// count as active from `now_ms`; partitions not listed are dropped.
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
            if self.find(topic, *partition).is_some() {
                continue; // listed twice
            }
            let state = old
                .remove(&key)
                .unwrap_or_else(|| self.new_partition(topic.clone(), *partition, now_ms));
            self.insert(state);
        }
        self.dirty = true;
        self.next_idle_check = i64::MIN;
    }

    fn new_partition(&self, topic: Arc<str>, partition: i32, now_ms: i64) -> PartitionState {
        PartitionState {
            topic,
            partition,
            max_ts: self.floor,
            last_active_ms: now_ms,
            backlog: Backlog::Unknown,
            idle: false,
        }
    }

    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.index.get(topic)?.get(&partition).copied()
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

    /// The partition's index, adding it (active from `now_ms`) if it was not assigned.
    fn slot(&mut self, topic: &str, partition: i32, now_ms: i64) -> usize {
        // Records arrive in runs per partition: try the last one before hashing.
        let last = self.last_hit.filter(|&i| {
            self.partitions
                .get(i)
                .is_some_and(|p| p.partition == partition && *p.topic == *topic)
        });
        match last.or_else(|| self.find(topic, partition)) {
            Some(i) => i,
            None => {
                let state = self.new_partition(Arc::from(topic), partition, now_ms);
                self.dirty = true;
                self.insert(state)
            }
        }
    }

    /// Records an event time read from `(topic, partition)` at processing time `now_ms`.
    /// A partition that was not assigned is added.
    pub fn observe(&mut self, topic: &str, partition: i32, ts: i64, now_ms: i64) {
        let i = self.slot(topic, partition, now_ms);
        self.last_hit = Some(i);
        let p = &mut self.partitions[i];
        p.last_active_ms = p.last_active_ms.max(now_ms);
        if p.idle {
            p.idle = false;
            self.dirty = true;
        }
        if self.idle_timeout_ms.is_some() && p.backlog == Backlog::CaughtUp {
            self.next_idle_check = self.next_idle_check.min(self.deadline(i));
        }
        let p = &mut self.partitions[i];
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

    /// What the source reports of `(topic, partition)`'s unread records at `now_ms`.
    /// Records waiting make an idle partition hold the watermark back again.
    pub fn set_backlog(&mut self, topic: &str, partition: i32, backlog: Backlog, now_ms: i64) {
        let i = self.slot(topic, partition, now_ms);
        let p = &mut self.partitions[i];
        if p.backlog == backlog {
            return;
        }
        p.backlog = backlog;
        match backlog {
            Backlog::Waiting if p.idle => {
                p.idle = false;
                self.dirty = true;
            }
            Backlog::CaughtUp if self.idle_timeout_ms.is_some() => {
                self.next_idle_check = self.next_idle_check.min(self.deadline(i));
            }
            _ => {}
        }
    }

    /// When partition `i` turns idle if it stays caught up and gets no record.
    fn deadline(&self, i: usize) -> i64 {
        let timeout = self.idle_timeout_ms.unwrap_or(i64::MAX);
        self.partitions[i].last_active_ms.saturating_add(timeout)
    }

    /// The source's watermark at processing time `now_ms`: `None` until every active
    /// partition has seen a record. Never decreases.
    pub fn current(&mut self, now_ms: i64) -> Option<i64> {
        self.check_idle(now_ms);
        if self.dirty {
            self.recompute();
        }
        let min = if self.active > 0 {
            self.cached_min
        } else {
            self.idle_min
        };
        if let Some(min) = min {
            let wm = self.watermark_of(min);
            if self.emitted.is_none_or(|e| wm > e) {
                self.emitted = Some(wm);
            }
        }
        self.emitted
    }

    fn watermark_of(&self, max_ts: i64) -> i64 {
        max_ts
            .saturating_sub(self.max_out_of_orderness_ms)
            .saturating_sub(1)
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

    /// Every partition's event-time position at `now_ms` (idleness brought up to date).
    pub fn marks(&mut self, now_ms: i64) -> Vec<PartitionMark> {
        self.check_idle(now_ms);
        self.partitions
            .iter()
            .map(|p| PartitionMark {
                topic: p.topic.clone(),
                partition: p.partition,
                max_event_time: p.max_ts,
                watermark: p.max_ts.map(|m| self.watermark_of(m)),
                backlog: p.backlog,
                idle: p.idle,
            })
            .collect()
    }

    /// The highest event time read from `(topic, partition)` (or restored), if any.
    pub fn max_event_time(&self, topic: &str, partition: i32) -> Option<i64> {
        self.find(topic, partition)
            .and_then(|i| self.partitions[i].max_ts)
    }

    /// After a restore from a snapshot whose watermark was `watermark` and whose partitions
    /// had read up to the event times in `max_event_times` (`(topic, partition, max)`):
    /// those partitions continue from there, and every partition (assigned now or later)
    /// starts at least at `watermark + maxOutOfOrderness + 1`, so the watermark never drops
    /// below the restored one.
    pub fn restore(&mut self, watermark: Option<i64>, max_event_times: &[(&str, i32, i64)]) {
        if let Some(wm) = watermark {
            let floor = wm
                .saturating_add(self.max_out_of_orderness_ms)
                .saturating_add(1);
            self.floor = Some(self.floor.map_or(floor, |f| f.max(floor)));
            if self.emitted.is_none_or(|e| wm > e) {
                self.emitted = Some(wm);
            }
        }
        for &(topic, partition, max) in max_event_times {
            if let Some(i) = self.find(topic, partition) {
                let p = &mut self.partitions[i];
                p.max_ts = Some(p.max_ts.map_or(max, |m| m.max(max)));
            }
        }
        if let Some(floor) = self.floor {
            for p in &mut self.partitions {
                p.max_ts = Some(p.max_ts.map_or(floor, |m| m.max(floor)));
            }
        }
        self.dirty = true;
    }

    /// Marks partitions idle that are caught up and had no record for the idle timeout.
    fn check_idle(&mut self, now_ms: i64) {
        if self.idle_timeout_ms.is_none() || now_ms < self.next_idle_check {
            return;
        }
        let mut next = i64::MAX;
        for i in 0..self.partitions.len() {
            let p = &self.partitions[i];
            if p.idle || p.backlog != Backlog::CaughtUp {
                continue;
            }
            let deadline = self.deadline(i);
            if now_ms >= deadline {
                self.partitions[i].idle = true;
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
        self.idle_min = self.partitions.iter().filter_map(|p| p.max_ts).min();
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

    /// Reports every partition caught up at `now`.
    fn caught_up(w: &mut WatermarkTracker, ps: &[(&str, i32)], now: i64) {
        for (t, p) in ps {
            w.set_backlog(t, *p, Backlog::CaughtUp, now);
        }
    }

    #[test]
    fn idle_partitions_are_excluded_and_come_back() {
        let all = [("a", 0), ("a", 1), ("b", 0)];
        let mut w = WatermarkTracker::new(0, Some(1_000));
        w.assign(&parts(&all), 0);
        caught_up(&mut w, &all, 0);
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

    /// An empty partition reported caught up only after the partition with records turned
    /// idle: the watermark is what it would be had the empty one turned idle first.
    #[test]
    fn all_idle_does_not_depend_on_which_partition_turned_idle_first() {
        for empty_reported_at in [0, 5_000] {
            let mut w = WatermarkTracker::new(0, Some(1_000));
            w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
            w.set_backlog("in", 0, Backlog::CaughtUp, 0);
            w.observe("in", 0, 1_000, 10);
            w.observe("in", 0, 999_999, 20);
            w.set_backlog("in", 1, Backlog::CaughtUp, empty_reported_at);
            assert_eq!(
                w.current(empty_reported_at + 2_000),
                Some(999_998),
                "empty partition reported at {empty_reported_at}"
            );
            assert!(w.is_idle(empty_reported_at + 2_000));
        }
    }

    #[test]
    fn a_partition_with_records_waiting_is_never_idle() {
        let mut w = WatermarkTracker::new(0, Some(1_000));
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        // Partition 0's backlog is never reported: it never turns idle.
        w.set_backlog("in", 1, Backlog::Waiting, 0);
        w.observe("in", 0, 50_000, 10);
        // Partition 1 has a backlog and has delivered nothing for a minute: it still holds
        // the watermark back, however long it takes.
        assert_eq!(w.current(60_000), None);
        assert!(!w.is_idle(60_000));
        w.observe("in", 1, 1_000, 60_000);
        assert_eq!(w.current(60_000), Some(999));
        // Read slowly: one record a minute, still waiting in between.
        w.observe("in", 1, 2_000, 120_000);
        assert_eq!(w.current(179_000), Some(1_999));
        // An unknown backlog holds it back too.
        w.set_backlog("in", 1, Backlog::Unknown, 180_000);
        assert_eq!(w.current(300_000), Some(1_999));
        // Caught up and quiet for the timeout: now it is idle, and partition 0 alone sets
        // the watermark.
        w.set_backlog("in", 1, Backlog::CaughtUp, 300_000);
        assert_eq!(w.current(300_000), Some(49_999));
        let marks = w.marks(300_000);
        assert_eq!(
            marks
                .iter()
                .map(|m| (m.backlog, m.idle))
                .collect::<Vec<_>>(),
            [(Backlog::Unknown, false), (Backlog::CaughtUp, true)]
        );
        assert_eq!(marks[0].watermark, Some(49_999));
        assert_eq!(marks[1].max_event_time, Some(2_000));
    }

    #[test]
    fn records_waiting_in_an_idle_partition_hold_the_watermark_again() {
        let mut w = WatermarkTracker::new(0, Some(1_000));
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        caught_up(&mut w, &[("in", 0), ("in", 1)], 0);
        w.observe("in", 0, 10_000, 0);
        w.observe("in", 1, 5_000, 0);
        assert_eq!(w.current(0), Some(4_999));
        // Partition 1 turns idle: partition 0 alone moves the watermark.
        w.observe("in", 0, 20_000, 1_500);
        assert_eq!(w.current(1_500), Some(19_999));
        // New records land in partition 1, not read yet: it holds the watermark from here.
        w.set_backlog("in", 1, Backlog::Waiting, 1_600);
        w.observe("in", 0, 30_000, 1_600);
        assert_eq!(w.current(1_600), Some(19_999));
        w.observe("in", 1, 25_000, 1_700);
        assert_eq!(w.current(1_700), Some(24_999));
    }

    #[test]
    fn restore_continues_each_partition_and_keeps_a_floor() {
        let mut w = WatermarkTracker::new(50, None);
        w.restore(Some(10_000), &[]);
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

        // Each partition continues from the event time it had read up to: one that was
        // read to its end before the snapshot does not hold the others back.
        let mut w = WatermarkTracker::new(0, None);
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        w.restore(
            Some(700),
            &[("in", 0, 90_000), ("in", 1, 701), ("other", 0, 5)],
        );
        assert_eq!(w.current(0), Some(700));
        w.observe("in", 1, 800, 0);
        assert_eq!(w.current(0), Some(799));
        w.observe("in", 1, 100_000, 0);
        assert_eq!(w.current(0), Some(89_999));
        assert_eq!(w.max_event_time("in", 0), Some(90_000));
        assert_eq!(w.max_event_time("in", 1), Some(100_000));
        assert_eq!(w.max_event_time("other", 0), None);

        // A restored max below the floor is raised to it.
        let mut w = WatermarkTracker::new(0, None);
        w.assign(&parts(&[("in", 0)]), 0);
        w.restore(Some(700), &[("in", 0, 3)]);
        assert_eq!(w.max_event_time("in", 0), Some(701));

        // Restored everywhere at the end of its input: the watermark is there at once.
        let mut w = WatermarkTracker::new(1_000, None);
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        w.restore(Some(5_000), &[("in", 0, 70_000), ("in", 1, 80_000)]);
        assert_eq!(w.current(0), Some(68_999));
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
        // A deterministic pseudo-random interleaving over 5 partitions, with idleness and
        // backlog reports mixed in, against a naive recomputation of the same rules.
        let ps = parts(&[("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)]);
        let timeout = 40;
        let mut w = WatermarkTracker::new(7, Some(timeout));
        w.assign(&ps, 0);
        let mut max = [None::<i64>; 5];
        let mut last = [0i64; 5];
        let mut backlog = [Backlog::Unknown; 5];
        let mut idle = [false; 5];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut best: Option<i64> = None;
        for step in 0..20_000i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % 5) as usize;
            let now = step;
            if (seed >> 20).is_multiple_of(7) {
                let b = [Backlog::Unknown, Backlog::Waiting, Backlog::CaughtUp]
                    [((seed >> 24) % 3) as usize];
                w.set_backlog(&ps[i].0, ps[i].1, b, now);
                if b == Backlog::Waiting {
                    idle[i] = false;
                }
                backlog[i] = b;
            } else if !(seed >> 28).is_multiple_of(3) {
                let ts = step * 3 + (seed >> 8) as i64 % 200 - 100;
                w.observe(&ps[i].0, ps[i].1, ts, now);
                max[i] = Some(max[i].map_or(ts, |m| m.max(ts)));
                last[i] = now;
                idle[i] = false;
            }
            for j in 0..5 {
                if backlog[j] == Backlog::CaughtUp && now >= last[j] + timeout {
                    idle[j] = true;
                }
            }
            let active: Vec<usize> = (0..5).filter(|&j| !idle[j]).collect();
            if !active.is_empty() && active.iter().all(|&j| max[j].is_some()) {
                let naive = active.iter().filter_map(|&j| max[j]).min().unwrap() - 8;
                best = Some(best.map_or(naive, |b: i64| b.max(naive)));
            }
            assert_eq!(w.current(now), best, "step {step}");
            assert_eq!(w.is_idle(now), active.is_empty(), "step {step}");
        }
    }
}
