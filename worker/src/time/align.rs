//! Watermark alignment: which partitions to pause so a backlog is read evenly in event time.
//!
//! A source that reads a backlog rarely gets its partitions at the same pace: the broker and
//! the client favour some, and one partition can deliver its first record half a minute
//! after the others. The watermark waits for the slowest partition while the others' records
//! pile up in window state. As Flink's watermark alignment does, [`decide`] pauses every
//! partition whose watermark is more than `maxDrift` ahead of the slowest partition that
//! still has records waiting, and resumes it once it is within half of that (the gap keeps a
//! partition from flapping between the two).
//!
//! What holds the others back is a partition that is not idle and not caught up: it has
//! records waiting, is paused, or its backlog is not known yet (the client has not fetched it
//! at all, which is how a starved partition looks). One that has not delivered a record yet
//! holds every other partition paused until it does, so the client fetches it. A caught-up
//! partition holds nothing back: there is nothing to wait for. The slowest of the holding
//! partitions is never paused itself, so alignment always leaves something to read.
//!
//! Pure: the caller reads the partitions' marks and applies the decision to the consumer.

use super::watermark::{Backlog, PartitionMark};

/// Whether each partition (in the order of `marks`) should be paused; `paused` says which
/// are now. `max_drift_ms` is the largest lead in event time a partition may have.
pub fn decide(marks: &[PartitionMark], paused: &[bool], max_drift_ms: i64) -> Vec<bool> {
    let is_paused = |i: usize| paused.get(i).copied().unwrap_or(false);
    // The slowest watermark among the partitions that hold the others back; `i64::MIN`
    // when one of them has not delivered a record yet.
    let mut slowest: Option<i64> = None;
    for (i, m) in marks.iter().enumerate() {
        if m.idle {
            continue;
        }
        if is_paused(i) || m.backlog != Backlog::CaughtUp {
            let w = m.watermark.unwrap_or(i64::MIN);
            slowest = Some(slowest.map_or(w, |s| s.min(w)));
        }
    }
    let resume_within = max_drift_ms / 2;
    marks
        .iter()
        .enumerate()
        .map(|(i, m)| match (slowest, m.watermark) {
            (Some(s), Some(w)) => {
                let lead = w.saturating_sub(s);
                if is_paused(i) {
                    lead > resume_within
                } else {
                    lead > max_drift_ms
                }
            }
            _ => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn mark(watermark: Option<i64>, backlog: Backlog, idle: bool) -> PartitionMark {
        PartitionMark {
            topic: Arc::from("in"),
            partition: 0,
            max_event_time: watermark.map(|w| w + 1),
            watermark,
            backlog,
            idle,
        }
    }

    use Backlog::{CaughtUp, Unknown, Waiting};

    #[test]
    fn partitions_far_ahead_of_the_slowest_lagging_one_pause() {
        let marks = [
            mark(Some(1_000), Waiting, false),
            mark(Some(20_000), Waiting, false),
            mark(Some(11_001), Waiting, false),
            mark(Some(11_000), Waiting, false),
        ];
        assert_eq!(
            decide(&marks, &[false; 4], 10_000),
            [false, true, true, false]
        );
    }

    #[test]
    fn a_paused_partition_resumes_within_half_the_drift() {
        let marks = [
            mark(Some(10_000), Waiting, false),
            mark(Some(15_001), Waiting, false),
            mark(Some(15_000), Waiting, false),
        ];
        let paused = [false, true, true];
        assert_eq!(decide(&marks, &paused, 10_000), [false, true, false]);
        // Not paused, the same lead is allowed.
        assert_eq!(decide(&marks, &[false; 3], 10_000), [false, false, false]);
    }

    #[test]
    fn a_lagging_partition_that_has_delivered_nothing_holds_every_other_one() {
        let marks = [
            mark(None, Waiting, false),
            mark(Some(5), Waiting, false),
            mark(Some(i64::MIN / 2), CaughtUp, false),
        ];
        // Everything else is paused, caught up or not, until it delivers.
        assert_eq!(decide(&marks, &[false; 3], 10_000), [false, true, true]);
        // So does one the client has not fetched yet (its backlog is not known).
        let marks = [mark(None, Unknown, false), mark(Some(5), Waiting, false)];
        assert_eq!(decide(&marks, &[false; 2], 10_000), [false, true]);
        // Once it is known to be empty, it holds nothing back.
        let marks = [mark(None, CaughtUp, false), mark(Some(5), Waiting, false)];
        assert_eq!(decide(&marks, &[false; 2], 10_000), [false, false]);
    }

    #[test]
    fn caught_up_and_idle_partitions_hold_nothing_back() {
        let marks = [
            mark(Some(0), CaughtUp, false),
            mark(Some(-50_000), Waiting, true),
            mark(Some(100_000), Waiting, false),
            mark(Some(200_000), CaughtUp, false),
        ];
        // The slowest partition with records waiting is the one at 100_000: only the one at
        // 200_000 is too far ahead of it.
        assert_eq!(
            decide(&marks, &[false; 4], 10_000),
            [false, false, false, true]
        );
        // Nobody has records waiting: nobody is paused.
        let marks = [
            mark(Some(0), CaughtUp, false),
            mark(Some(1 << 40), CaughtUp, false),
        ];
        assert_eq!(decide(&marks, &[false, false], 10_000), [false, false]);
        // Paused partitions count as waiting: the slowest of them resumes first.
        assert_eq!(decide(&marks, &[true, true], 10_000), [false, true]);
    }

    #[test]
    fn the_slowest_holding_partition_is_never_paused() {
        // Exhaustively over small worlds: something that holds the others back always stays
        // readable, and a partition is only paused when it is ahead of one that holds.
        let backlogs = [Unknown, Waiting, CaughtUp];
        let watermarks = [None, Some(0), Some(6), Some(20)];
        let mut worlds = 0;
        for a in 0..24 {
            for b in 0..24 {
                for c in 0..24 {
                    let marks: Vec<PartitionMark> = [a, b, c]
                        .iter()
                        .map(|&k| mark(watermarks[k % 4], backlogs[(k / 4) % 3], k / 12 == 1))
                        .collect();
                    for p in 0..8u8 {
                        let paused: Vec<bool> = (0..3).map(|i| p & (1 << i) != 0).collect();
                        let out = decide(&marks, &paused, 10);
                        worlds += 1;
                        let holding: Vec<usize> = (0..3)
                            .filter(|&i| {
                                let m = &marks[i];
                                !m.idle && (paused[i] || m.backlog != CaughtUp)
                            })
                            .collect();
                        if holding.is_empty() {
                            assert!(out.iter().all(|p| !p), "{marks:?} {paused:?}");
                            continue;
                        }
                        assert!(
                            holding.iter().any(|&i| !out[i]),
                            "every holding partition paused: {marks:?} {paused:?} {out:?}"
                        );
                        for i in 0..3 {
                            if out[i] {
                                assert!(marks[i].watermark.is_some());
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(worlds, 24 * 24 * 24 * 8);
    }
}
