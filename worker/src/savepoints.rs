//! Savepoint requests from the control API and their progress: the board the HTTP server
//! writes requests on and the coordinator (worker 0) reports back to.
//!
//! A request gets an id at once (`POST /savepoints`); the coordinator triggers it when no
//! other snapshot is in flight, and `GET /savepoints/{id}` reports `pending`,
//! `in-progress` (with the snapshot id), `completed` (with the savepoint's path and size)
//! or `failed` (with the reason). A stop-with-savepoint that fails is retried under the same
//! request id.

use std::collections::BTreeMap;
use std::sync::Mutex;

pub use rivulet_api::status::SavepointStatus;

#[derive(Default)]
struct Inner {
    next: u64,
    queued: Vec<(u64, bool)>,
    all: BTreeMap<u64, SavepointStatus>,
    /// A caller has been told that a stop-with-savepoint completed.
    stop_answered: bool,
}

/// Requests and their progress, shared by the HTTP server and the processing loop.
#[derive(Default)]
pub struct SavepointBoard {
    inner: Mutex<Inner>,
}

impl SavepointBoard {
    /// Records a request; returns its id.
    pub fn request(&self, stop: bool, now_ms: i64) -> u64 {
        let Ok(mut g) = self.inner.lock() else {
            return 0;
        };
        g.next += 1;
        let id = g.next;
        g.queued.push((id, stop));
        g.all.insert(
            id,
            SavepointStatus {
                id,
                state: "pending".into(),
                stop,
                requested_at_ms: now_ms,
                snapshot_id: None,
                path: None,
                size_bytes: None,
                error: None,
            },
        );
        id
    }

    /// Requests not yet handed to the coordinator: (request id, stop).
    pub fn take_queued(&self) -> Vec<(u64, bool)> {
        self.inner
            .lock()
            .map(|mut g| std::mem::take(&mut g.queued))
            .unwrap_or_default()
    }

    /// Request `id`'s progress, for a caller of the control API. Remembers when a caller
    /// learns that a stop-with-savepoint completed, so a stopping worker 0 need not wait
    /// longer.
    pub fn answer(&self, id: u64) -> Option<SavepointStatus> {
        let mut g = self.inner.lock().ok()?;
        let s = g.all.get(&id).cloned()?;
        if s.stop && s.state == "completed" {
            g.stop_answered = true;
        }
        Some(s)
    }

    /// Every request, oldest first (what a control plane that lost a request id reads). Like
    /// [`SavepointBoard::answer`], it remembers a completed stop-with-savepoint was seen.
    pub fn all(&self) -> Vec<SavepointStatus> {
        let Ok(mut g) = self.inner.lock() else {
            return Vec::new();
        };
        let all: Vec<SavepointStatus> = g.all.values().cloned().collect();
        if all.iter().any(|s| s.stop && s.state == "completed") {
            g.stop_answered = true;
        }
        all
    }

    /// Whether a caller has read the completion of a stop-with-savepoint.
    pub fn stop_answered(&self) -> bool {
        self.inner.lock().map(|g| g.stop_answered).unwrap_or(false)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut SavepointStatus)) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(s) = g.all.get_mut(&id) {
                f(s);
            }
        }
    }

    /// Request `id` is being taken as snapshot `snapshot`.
    pub fn started(&self, id: u64, snapshot: u64) {
        self.update(id, |s| {
            s.state = "in-progress".into();
            s.snapshot_id = Some(snapshot);
        });
    }

    pub fn completed(&self, id: u64, path: String, size_bytes: u64) {
        self.update(id, |s| {
            s.state = "completed".into();
            s.path = Some(path);
            s.size_bytes = Some(size_bytes);
        });
    }

    pub fn failed(&self, id: u64, reason: String) {
        self.update(id, |s| {
            s.state = "failed".into();
            s.error = Some(reason);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_from_pending_to_completed() {
        let b = SavepointBoard::default();
        let a = b.request(false, 10);
        let c = b.request(true, 11);
        assert_ne!(a, c);
        assert_eq!(b.take_queued(), vec![(a, false), (c, true)]);
        assert!(b.take_queued().is_empty());
        assert_eq!(b.answer(a).unwrap().state, "pending");
        b.started(a, 7);
        assert_eq!(b.answer(a).unwrap().snapshot_id, Some(7));
        b.completed(a, "file:///x/savepoints/7".into(), 99);
        let s = b.answer(a).unwrap();
        assert_eq!((s.state.as_str(), s.size_bytes), ("completed", Some(99)));
        b.failed(c, "timed out".into());
        assert_eq!(b.answer(c).unwrap().error.as_deref(), Some("timed out"));
        assert_eq!(b.answer(12345), None);
    }

    #[test]
    fn every_request_is_listed_oldest_first() {
        let b = SavepointBoard::default();
        assert!(b.all().is_empty());
        let a = b.request(false, 1);
        let c = b.request(true, 2);
        let ids: Vec<u64> = b.all().iter().map(|s| s.id).collect();
        assert_eq!(ids, [a, c]);
        b.completed(c, "file:///x/savepoints/3".into(), 1);
        assert!(!b.stop_answered());
        assert_eq!(b.all()[1].state, "completed");
        assert!(b.stop_answered(), "the list showed the completed stop");
    }

    #[test]
    fn reading_a_completed_stop_savepoint_is_remembered() {
        let b = SavepointBoard::default();
        let plain = b.request(false, 1);
        let stop = b.request(true, 2);
        b.completed(plain, "file:///x/savepoints/1".into(), 1);
        assert!(b.answer(plain).is_some());
        assert!(!b.stop_answered(), "not a stop");
        b.started(stop, 2);
        assert_eq!(b.answer(stop).unwrap().state, "in-progress");
        assert!(!b.stop_answered(), "not complete yet");
        b.completed(stop, "file:///x/savepoints/2".into(), 1);
        assert_eq!(b.answer(stop).unwrap().state, "completed");
        assert!(b.stop_answered());
    }
}
