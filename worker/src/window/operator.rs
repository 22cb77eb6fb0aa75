//! The keyed window operator: assigns records to windows, keeps one accumulator set per
//! window in a [`StateBackend`], fires windows as the watermark passes them, re-emits windows
//! updated by late records within the allowed lateness, merges session windows, and drops
//! expired state.
//!
//! # State encoding
//!
//! State is the source of truth; the timer queue in memory is rebuilt from it by
//! [`WindowOperator::restore_timers`]. Entries live in the key group of their key.
//!
//! - **Key** of a tumbling or sliding window: `b'W' ++ key ++ start`, where `key` is the
//!   canonical key bytes and `start` is the window start as a big-endian `u64` with the sign
//!   bit flipped (`start ^ i64::MIN`), so byte order is numeric order and one key's windows
//!   are contiguous and sorted in RocksDB.
//! - **Key** of a key's session windows: `b'S' ++ key` (all sessions of one key in one entry,
//!   so merging needs one read).
//! - **Value**: one format byte ([`FORMAT_VERSION`]) followed by the postcard encoding of
//!   [`Entry`]: the key as JSON (printed with results), and the windows (one for `W` entries,
//!   one or more disjoint sessions sorted by start for `S` entries), each with its bounds, its
//!   `fired` flag and one [`Accumulator`] per aggregate in spec order.
//!
//! Keys starting with any other byte are not the window operator's and are ignored when timers
//! are rebuilt. A value that does not decode, or that does not match the spec (number or kind
//! of aggregates, window type), is [`WindowError::Corrupt`].
//!
//! # Firing and lateness
//!
//! With watermark `W` and allowed lateness `L` (see the module doc of [`super`]):
//!
//! - A window fires once `end - 1 <= W`, in [`WindowOperator::advance_watermark`], in the
//!   order (end, key group, key bytes). Its result is [`ResultKind::Final`] unless a result
//!   covering (part of) it was emitted before (then [`ResultKind::Update`]; see sessions).
//! - A window's state is deleted once `end - 1 + L <= W`; when it fires and expires in the
//!   same call the result is emitted first.
//! - [`WindowOperator::process`] adds records at the current watermark. A record that only
//!   belongs to expired windows is reported late (its index goes to `late`) and changes
//!   nothing. A record that belongs to no window at all (sliding windows with
//!   `slide > size` leave gaps) is not late; it is simply in no window.
//! - A record that lands in a window that already fired but has not expired updates it, and
//!   the window's new result is emitted at once as an `Update` — **once per window per
//!   `process` call**, with the state after all of that call's records. A late record that
//!   opens a window with no state yet (nothing was emitted for it) emits it at once as
//!   `Final`, its first result.
//! - Results emitted by one `process` call are ordered by (end, key group, key, start);
//!   `late` receives indices in increasing order.
//!
//! # Sessions
//!
//! A record opens `[ts, ts + gap)`, which merges with every session of its key it intersects
//! (Flink's rule, touching sessions merge). The record is late only if it merges with nothing
//! and its own window is expired. A merged session is marked fired if any session merged into
//! it had fired; the next result for it is then an `Update` (it supersedes what was emitted).
//! If the merged session ends at or before the watermark, that `Update` is emitted at once;
//! if the merge extended it past the watermark, it is emitted when the watermark passes its
//! new end. Within one `process` call, a key's records are applied in input order.
//!
//! # Timers
//!
//! Timers are a `BTreeSet` of `(time, key group, state key)` in memory: a window's fire time
//! `end - 1` and its cleanup time `end - 1 + L`. A timer whose window was merged away is
//! removed with it, so [`WindowOperator::next_fire_time`] is exact.
//!
//! Errors leave the operator in an unspecified state: the caller restores from a checkpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use foldhash::fast::FixedState;

use rivulet_api::spec::{AggregateFn, AggregateSpec, WindowSpec};
use serde::{Deserialize, Serialize};

use super::agg::{self, Accumulator};
use super::assign::{Assigner, Window};
use super::{KeyedInput, ResultKind, WindowError, WindowResult};
use crate::state::StateBackend;

/// First byte of every value; bumped when [`Entry`]'s encoding changes.
pub const FORMAT_VERSION: u8 = 1;
/// First byte of the state key of one tumbling or sliding window.
pub const TAG_WINDOW: u8 = b'W';
/// First byte of the state key holding all session windows of one key.
pub const TAG_SESSIONS: u8 = b'S';

/// The value of a state entry (after the format byte).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The key fields as a JSON object, emitted with results.
    pub key_json: String,
    /// One window (`W` entries) or the key's disjoint sessions sorted by start (`S` entries).
    pub windows: Vec<WindowState>,
}

/// One window's bounds, whether a result for it was emitted, and its accumulators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub start: i64,
    pub end: i64,
    /// A result covering this window (or a session merged into it) has been emitted: the next
    /// one is an `Update`.
    pub fired: bool,
    pub accs: Vec<Accumulator>,
}

impl WindowState {
    fn window(&self) -> Window {
        Window::new(self.start, self.end)
    }
}

type Timer = (i64, u32, Vec<u8>);

/// Decoding and validation of state entries, kept apart from the backend so both can be
/// borrowed at once.
struct Codec {
    assigner: Assigner,
    functions: Vec<AggregateFn>,
}

impl Codec {
    fn tag(&self) -> u8 {
        if self.assigner.is_session() {
            TAG_SESSIONS
        } else {
            TAG_WINDOW
        }
    }

    fn window_key(key: &[u8], start: i64) -> Vec<u8> {
        let mut sk = Vec::with_capacity(key.len() + 9);
        sk.push(TAG_WINDOW);
        sk.extend_from_slice(key);
        sk.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
        sk
    }

    fn session_key(key: &[u8]) -> Vec<u8> {
        let mut sk = Vec::with_capacity(key.len() + 1);
        sk.push(TAG_SESSIONS);
        sk.extend_from_slice(key);
        sk
    }

    /// The canonical key bytes inside a state key of this operator.
    fn key_of<'k>(&self, kg: u32, sk: &'k [u8]) -> Result<&'k [u8], WindowError> {
        match sk.split_first() {
            Some((&TAG_WINDOW, rest)) if self.tag() == TAG_WINDOW && rest.len() >= 8 => {
                Ok(&rest[..rest.len() - 8])
            }
            Some((&TAG_SESSIONS, rest)) if self.tag() == TAG_SESSIONS => Ok(rest),
            _ => Err(corrupt(
                kg,
                sk,
                "state key does not match the window type of the spec",
            )),
        }
    }

    fn encode(entry: &Entry) -> Result<Vec<u8>, WindowError> {
        postcard::to_extend(entry, vec![FORMAT_VERSION])
            .map_err(|e| WindowError::Corrupt(format!("cannot encode window state: {e}")))
    }

    fn decode(&self, kg: u32, sk: &[u8], value: &[u8]) -> Result<Entry, WindowError> {
        let (&version, body) = value
            .split_first()
            .ok_or_else(|| corrupt(kg, sk, "empty value"))?;
        if version != FORMAT_VERSION {
            return Err(corrupt(
                kg,
                sk,
                &format!("unknown state format {version} (expected {FORMAT_VERSION})"),
            ));
        }
        let (entry, rest): (Entry, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| corrupt(kg, sk, &e.to_string()))?;
        if !rest.is_empty() {
            return Err(corrupt(kg, sk, "trailing bytes after the value"));
        }
        let key = self.key_of(kg, sk)?;
        match sk.first() {
            Some(&TAG_WINDOW) => {
                let expected = entry
                    .windows
                    .first()
                    .map(|w| Self::window_key(key, w.start));
                if entry.windows.len() != 1 || expected.as_deref() != Some(sk) {
                    return Err(corrupt(kg, sk, "window entry does not hold its one window"));
                }
            }
            _ => {
                if entry.windows.is_empty() {
                    return Err(corrupt(kg, sk, "session entry without sessions"));
                }
            }
        }
        for w in &entry.windows {
            if w.end <= w.start {
                return Err(corrupt(kg, sk, "window ends before it starts"));
            }
            if w.accs.len() != self.functions.len()
                || !w
                    .accs
                    .iter()
                    .zip(&self.functions)
                    .all(|(a, f)| a.is_for(*f))
            {
                return Err(corrupt(
                    kg,
                    sk,
                    "aggregates in state do not match the spec's aggregates",
                ));
            }
        }
        Ok(entry)
    }
}

fn corrupt(kg: u32, sk: &[u8], reason: &str) -> WindowError {
    WindowError::Corrupt(format!("key group {kg}, state key {}: {reason}", hex(sk)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn merge_error(e: agg::MergeMismatch) -> WindowError {
    WindowError::Corrupt(e.to_string())
}

/// The timers of an entry at `watermark`: each window's fire time and cleanup time, when
/// still ahead. A window restored behind the watermark without having fired, or past its
/// cleanup time, gets a timer at `watermark + 1` so the next advance handles it.
fn entry_timers(entry: &Entry, lateness: i64, watermark: i64) -> impl Iterator<Item = i64> + '_ {
    let soon = watermark.saturating_add(1);
    entry.windows.iter().flat_map(move |w| {
        let win = w.window();
        let fire = if win.max_timestamp() > watermark {
            Some(win.max_timestamp())
        } else if !w.fired {
            Some(soon)
        } else {
            None
        };
        let cleanup = win.cleanup_time(lateness).max(soon);
        fire.into_iter().chain(std::iter::once(cleanup))
    })
}

/// Whether an entry restored at `watermark` holds a window that should have fired already,
/// or one past its cleanup time.
fn is_overdue(entry: &Entry, lateness: i64, watermark: i64) -> bool {
    entry.windows.iter().any(|w| {
        let win = w.window();
        (!w.fired && win.max_timestamp() <= watermark) || win.is_expired(lateness, watermark)
    })
}

/// Records of one call pre-aggregated into one window (tumbling and sliding).
struct Pending<'a> {
    key: &'a [u8],
    key_json: &'a str,
    window: Window,
    accs: Vec<Accumulator>,
}

/// The keyed window operator of one worker, over the key groups its backend holds.
pub struct WindowOperator {
    codec: Codec,
    allowed_lateness: i64,
    state: Box<dyn StateBackend>,
    watermark: i64,
    timers: BTreeSet<Timer>,
}

impl WindowOperator {
    /// An operator for a validated window spec and its aggregates, over `state` (empty, or
    /// restored and followed by [`WindowOperator::restore_timers`]).
    ///
    /// Fails if the window spec lacks its size, slide or gap, or one is zero (the spec
    /// validator rejects those before a worker starts).
    pub fn new(
        window: &WindowSpec,
        aggregates: &[AggregateSpec],
        state: Box<dyn StateBackend>,
    ) -> Result<Self, WindowError> {
        let assigner = Assigner::from_spec(window).map_err(WindowError::Spec)?;
        Ok(WindowOperator {
            codec: Codec {
                assigner,
                functions: aggregates.iter().map(|a| a.function).collect(),
            },
            allowed_lateness: window.allowed_lateness.as_millis_i64(),
            state,
            watermark: i64::MIN,
            timers: BTreeSet::new(),
        })
    }

    /// Which windows a timestamp belongs to.
    pub fn assigner(&self) -> &Assigner {
        &self.codec.assigner
    }

    /// The current watermark (`i64::MIN` before the first advance).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The state backend (for snapshots and restores).
    pub fn state_mut(&mut self) -> &mut dyn StateBackend {
        &mut *self.state
    }

    /// Number of timers pending (a gauge for metrics).
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The smallest watermark at which [`WindowOperator::advance_watermark`] would fire or
    /// drop a window; `None` when no window is pending.
    pub fn next_fire_time(&self) -> Option<i64> {
        self.timers.first().map(|(t, _, _)| *t)
    }

    /// Rebuilds the timers from state (after the backend was restored) and sets the
    /// watermark to the restored one. Windows the restored state holds behind that watermark
    /// that never fired (state taken at a lower watermark than the one restored, e.g. merged
    /// from workers of a snapshot at another parallelism) fire now, into `out`, in firing
    /// order; those past their cleanup time are dropped.
    pub fn restore_timers(
        &mut self,
        watermark: i64,
        out: &mut Vec<WindowResult>,
    ) -> Result<(), WindowError> {
        let mut timers = BTreeSet::new();
        let mut overdue = Vec::new();
        let mut error = None;
        let codec = &self.codec;
        let lateness = self.allowed_lateness;
        self.state.for_each(&mut |kg, sk, value| {
            if error.is_some() || !matches!(sk.first(), Some(&TAG_WINDOW | &TAG_SESSIONS)) {
                return;
            }
            match codec.decode(kg, sk, value) {
                Ok(entry) if is_overdue(&entry, lateness, watermark) => {
                    overdue.push((kg, sk.to_vec()));
                }
                Ok(entry) => {
                    for t in entry_timers(&entry, lateness, watermark) {
                        timers.insert((t, kg, sk.to_vec()));
                    }
                }
                Err(e) => error = Some(e),
            }
        })?;
        if let Some(e) = error {
            return Err(e);
        }
        self.timers = timers;
        self.watermark = watermark;
        let mut fired = Vec::new();
        for (kg, sk) in overdue {
            self.settle_overdue(kg, &sk, &mut fired)?;
        }
        sort_results(&mut fired);
        out.extend(fired.into_iter().map(|(_, r)| r));
        Ok(())
    }

    /// Fires the windows of one restored entry that are behind the watermark and never
    /// fired, drops the expired ones, and sets timers for the rest.
    fn settle_overdue(
        &mut self,
        kg: u32,
        sk: &[u8],
        out: &mut Vec<(u32, WindowResult)>,
    ) -> Result<(), WindowError> {
        let Some(bytes) = self.state.get(kg, sk)? else {
            return Ok(());
        };
        let mut entry = self.codec.decode(kg, sk, &bytes)?;
        let key = self.codec.key_of(kg, sk)?;
        let (watermark, lateness) = (self.watermark, self.allowed_lateness);
        for w in &mut entry.windows {
            if !w.fired && w.window().max_timestamp() <= watermark {
                out.push((kg, result_of(&entry.key_json, key, w)));
                w.fired = true;
            }
        }
        entry
            .windows
            .retain(|w| !w.window().is_expired(lateness, watermark));
        if entry.windows.is_empty() {
            return self.state.delete(kg, sk).map_err(Into::into);
        }
        for t in entry_timers(&entry, lateness, watermark) {
            self.timers.insert((t, kg, sk.to_vec()));
        }
        self.state.put(kg, sk, &Codec::encode(&entry)?)?;
        Ok(())
    }

    /// Adds `inputs` at the current watermark. Windows already fired and updated by these
    /// records are re-emitted into `out`; indices of late records are appended to `late`.
    pub fn process(
        &mut self,
        inputs: &[KeyedInput],
        out: &mut Vec<WindowResult>,
        late: &mut Vec<usize>,
    ) -> Result<(), WindowError> {
        debug_assert!(
            inputs
                .iter()
                .all(|r| r.inputs.len() == self.codec.functions.len()),
            "one aggregate input per aggregate"
        );
        let mut emitted = Vec::new();
        let late_from = late.len();
        if self.codec.assigner.is_session() {
            self.process_sessions(inputs, &mut emitted, late)?;
        } else {
            self.process_windows(inputs, &mut emitted, late)?;
        }
        late[late_from..].sort_unstable();
        sort_results(&mut emitted);
        out.extend(emitted.into_iter().map(|(_, r)| r));
        Ok(())
    }

    /// Tumbling and sliding windows: pre-aggregate the call's records per window, then one
    /// read and one write per window.
    fn process_windows(
        &mut self,
        inputs: &[KeyedInput],
        emitted: &mut Vec<(u32, WindowResult)>,
        late: &mut Vec<usize>,
    ) -> Result<(), WindowError> {
        let watermark = self.watermark;
        let lateness = self.allowed_lateness;
        // Keyed by (key group, key, window start) without building the state key per record;
        // results are sorted before they leave, so the map's order does not matter.
        let mut pending: HashMap<(u32, &[u8], i64), Pending<'_>, FixedState> =
            HashMap::with_hasher(FixedState::default());
        let mut windows = Vec::new();
        for (i, rec) in inputs.iter().enumerate() {
            windows.clear();
            self.codec.assigner.assign(rec.timestamp, &mut windows);
            let mut live = false;
            for win in &windows {
                if win.is_expired(lateness, watermark) {
                    continue;
                }
                live = true;
                let p = pending
                    .entry((rec.key_group, rec.key.as_slice(), win.start))
                    .or_insert_with(|| Pending {
                        key: &rec.key,
                        key_json: &rec.key_json,
                        window: *win,
                        accs: Accumulator::new_set(&self.codec.functions),
                    });
                agg::add_all(&mut p.accs, &rec.inputs, rec.timestamp, rec.position);
            }
            if !live && !windows.is_empty() {
                late.push(i);
            }
        }

        for ((kg, key, start), p) in pending {
            let sk = Codec::window_key(key, start);
            let (mut entry, is_new) = match self.state.get(kg, &sk)? {
                Some(bytes) => (self.codec.decode(kg, &sk, &bytes)?, false),
                None => {
                    let entry = Entry {
                        key_json: p.key_json.to_string(),
                        windows: vec![WindowState {
                            start: p.window.start,
                            end: p.window.end,
                            fired: false,
                            accs: Accumulator::new_set(&self.codec.functions),
                        }],
                    };
                    (entry, true)
                }
            };
            let w = &mut entry.windows[0];
            agg::merge_all(&mut w.accs, p.accs).map_err(merge_error)?;
            if w.window().max_timestamp() <= watermark {
                emitted.push((kg, result_of(&entry.key_json, p.key, w)));
                w.fired = true;
            }
            if is_new {
                for t in entry_timers(&entry, lateness, watermark) {
                    self.timers.insert((t, kg, sk.clone()));
                }
            }
            self.state.put(kg, &sk, &Codec::encode(&entry)?)?;
        }
        Ok(())
    }

    /// Session windows: one read and one write per key; the key's records merge in input
    /// order.
    fn process_sessions(
        &mut self,
        inputs: &[KeyedInput],
        emitted: &mut Vec<(u32, WindowResult)>,
        late: &mut Vec<usize>,
    ) -> Result<(), WindowError> {
        let watermark = self.watermark;
        let lateness = self.allowed_lateness;
        let mut by_key: BTreeMap<(u32, Vec<u8>), Vec<usize>> = BTreeMap::new();
        for (i, rec) in inputs.iter().enumerate() {
            by_key
                .entry((rec.key_group, Codec::session_key(&rec.key)))
                .or_default()
                .push(i);
        }

        let mut opened = Vec::with_capacity(1);
        for ((kg, sk), indices) in by_key {
            let first = &inputs[indices[0]];
            let mut entry = match self.state.get(kg, &sk)? {
                Some(bytes) => self.codec.decode(kg, &sk, &bytes)?,
                None => Entry {
                    key_json: first.key_json.clone(),
                    windows: Vec::new(),
                },
            };
            let old_timers: Vec<i64> = entry_timers(&entry, lateness, watermark).collect();
            // Parallel to `entry.windows`: changed by this call.
            let mut touched = vec![false; entry.windows.len()];
            let mut changed = false;

            for &i in &indices {
                let rec = &inputs[i];
                opened.clear();
                self.codec.assigner.assign(rec.timestamp, &mut opened);
                let Some(&new) = opened.first() else { continue };
                let mut accs = Accumulator::new_set(&self.codec.functions);
                agg::add_all(&mut accs, &rec.inputs, rec.timestamp, rec.position);

                let mut merged = WindowState {
                    start: new.start,
                    end: new.end,
                    fired: false,
                    accs,
                };
                let mut any = false;
                let mut idx = 0;
                while idx < entry.windows.len() {
                    if entry.windows[idx].window().intersects(&new) {
                        let old = entry.windows.remove(idx);
                        touched.remove(idx);
                        let cover = merged.window().cover(&old.window());
                        merged.start = cover.start;
                        merged.end = cover.end;
                        merged.fired |= old.fired;
                        agg::merge_all(&mut merged.accs, old.accs).map_err(merge_error)?;
                        any = true;
                    } else {
                        idx += 1;
                    }
                }
                if !any && new.is_expired(lateness, watermark) {
                    late.push(i);
                    continue;
                }
                let pos = entry.windows.partition_point(|w| w.start < merged.start);
                entry.windows.insert(pos, merged);
                touched.insert(pos, true);
                changed = true;
            }
            if !changed {
                continue;
            }

            let key = &first.key;
            for (w, touched) in entry.windows.iter_mut().zip(&touched) {
                if *touched && w.window().max_timestamp() <= watermark {
                    emitted.push((kg, result_of(&entry.key_json, key, w)));
                    w.fired = true;
                }
            }
            for t in old_timers {
                self.timers.remove(&(t, kg, sk.clone()));
            }
            for t in entry_timers(&entry, lateness, watermark) {
                self.timers.insert((t, kg, sk.clone()));
            }
            self.state.put(kg, &sk, &Codec::encode(&entry)?)?;
        }
        Ok(())
    }

    /// Moves the watermark forward (a lower or equal one is ignored): fires every window with
    /// `end - 1 <= watermark` in order (end, key group, key) and drops those with
    /// `end - 1 + allowedLateness <= watermark`.
    pub fn advance_watermark(
        &mut self,
        watermark: i64,
        out: &mut Vec<WindowResult>,
    ) -> Result<(), WindowError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        while self.timers.first().is_some_and(|(t, _, _)| *t <= watermark) {
            let Some((time, kg, sk)) = self.timers.pop_first() else {
                break;
            };
            self.on_timer(time, kg, &sk, out)?;
        }
        self.watermark = watermark;
        Ok(())
    }

    /// Handles the timer at `time` of one state entry: fires its windows due at `time`, then
    /// drops those expired at `time`.
    fn on_timer(
        &mut self,
        time: i64,
        kg: u32,
        sk: &[u8],
        out: &mut Vec<WindowResult>,
    ) -> Result<(), WindowError> {
        let Some(bytes) = self.state.get(kg, sk)? else {
            return Ok(());
        };
        let mut entry = self.codec.decode(kg, sk, &bytes)?;
        let key = self.codec.key_of(kg, sk)?;
        let lateness = self.allowed_lateness;
        let mut changed = false;
        for w in &mut entry.windows {
            let due = w.window().max_timestamp();
            if due == time || (!w.fired && due <= time) {
                out.push(result_of(&entry.key_json, key, w));
                w.fired = true;
                changed = true;
            }
        }
        let before = entry.windows.len();
        entry
            .windows
            .retain(|w| !w.window().is_expired(lateness, time));
        if entry.windows.is_empty() {
            self.state.delete(kg, sk)?;
        } else if changed || entry.windows.len() != before {
            self.state.put(kg, sk, &Codec::encode(&entry)?)?;
        }
        Ok(())
    }
}

fn result_of(key_json: &str, key: &[u8], w: &WindowState) -> WindowResult {
    WindowResult {
        key_json: key_json.to_string(),
        key: key.to_vec(),
        start: w.start,
        end: w.end,
        values: agg::results(&w.accs),
        kind: if w.fired {
            ResultKind::Update
        } else {
            ResultKind::Final
        },
    }
}

fn sort_results(results: &mut [(u32, WindowResult)]) {
    results.sort_by(|(ka, a), (kb, b)| {
        (a.end, *ka, &a.key, a.start).cmp(&(b.end, *kb, &b.key, b.start))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Number;
    use crate::state::heap::HeapBackend;
    use crate::window::AggInput;
    use rivulet_api::duration::Duration;
    use rivulet_api::keygroup::{key_group, push_key_part};
    use rivulet_api::spec::WindowType;
    use serde_json::{json, Value};

    const MAX_PARALLELISM: u32 = 128;

    fn key_bytes(user: &str) -> Vec<u8> {
        let mut key = Vec::new();
        push_key_part(&mut key, user.as_bytes());
        key
    }

    /// A record of `user` at `ts` from partition 0 at `offset`.
    fn rec(user: &str, ts: i64, offset: i64, inputs: Vec<AggInput>) -> KeyedInput {
        let key = key_bytes(user);
        KeyedInput {
            key_group: key_group(&key, MAX_PARALLELISM),
            key,
            key_json: json!({ "user": user }).to_string(),
            timestamp: ts,
            position: (0, offset),
            inputs,
        }
    }

    /// Inputs for [`all_aggs`]: count, then `v` for sum/min/max/avg, then `s` for
    /// first/last/distinctCount.
    fn all_inputs(v: Number, s: &str) -> Vec<AggInput> {
        let mut inputs = vec![AggInput::Nothing];
        inputs.extend((0..4).map(|_| AggInput::Number(v)));
        inputs.extend((0..3).map(|_| AggInput::Value(json!(s))));
        inputs
    }

    fn agg(name: &str, function: AggregateFn, field: Option<&str>) -> AggregateSpec {
        AggregateSpec {
            name: name.into(),
            function,
            field: field.map(str::to_string),
        }
    }

    fn all_aggs() -> Vec<AggregateSpec> {
        vec![
            agg("n", AggregateFn::Count, None),
            agg("sum", AggregateFn::Sum, Some("v")),
            agg("min", AggregateFn::Min, Some("v")),
            agg("max", AggregateFn::Max, Some("v")),
            agg("avg", AggregateFn::Avg, Some("v")),
            agg("first", AggregateFn::First, Some("s")),
            agg("last", AggregateFn::Last, Some("s")),
            agg("distinct", AggregateFn::DistinctCount, Some("s")),
        ]
    }

    /// count and sum of `v`.
    fn count_sum() -> Vec<AggregateSpec> {
        vec![
            agg("n", AggregateFn::Count, None),
            agg("sum", AggregateFn::Sum, Some("v")),
        ]
    }

    fn cs(user: &str, ts: i64, offset: i64, v: i64) -> KeyedInput {
        rec(
            user,
            ts,
            offset,
            vec![AggInput::Nothing, AggInput::Number(Number::Int(v))],
        )
    }

    fn window(kind: WindowType, size: u64, slide: u64, gap: u64, lateness: u64) -> WindowSpec {
        let d = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        WindowSpec {
            kind,
            size: d(size),
            slide: d(slide),
            gap: d(gap),
            allowed_lateness: Duration::from_millis(lateness),
        }
    }

    fn tumbling(size: u64, lateness: u64) -> WindowSpec {
        window(WindowType::Tumbling, size, 0, 0, lateness)
    }

    fn session(gap: u64, lateness: u64) -> WindowSpec {
        window(WindowType::Session, 0, 0, gap, lateness)
    }

    fn operator(spec: &WindowSpec, aggs: &[AggregateSpec]) -> WindowOperator {
        WindowOperator::new(spec, aggs, Box::new(HeapBackend::new(0..MAX_PARALLELISM))).unwrap()
    }

    fn res(user: &str, start: i64, end: i64, values: Vec<Value>, kind: ResultKind) -> WindowResult {
        WindowResult {
            key_json: json!({ "user": user }).to_string(),
            key: key_bytes(user),
            start,
            end,
            values,
            kind,
        }
    }

    fn process(op: &mut WindowOperator, inputs: &[KeyedInput]) -> (Vec<WindowResult>, Vec<usize>) {
        let (mut out, mut late) = (Vec::new(), Vec::new());
        op.process(inputs, &mut out, &mut late).unwrap();
        (out, late)
    }

    fn advance(op: &mut WindowOperator, wm: i64) -> Vec<WindowResult> {
        let mut out = Vec::new();
        op.advance_watermark(wm, &mut out).unwrap();
        out
    }

    /// Orders expected results of one firing as the operator does: (end, key group, key).
    fn by_fire_order(mut results: Vec<WindowResult>) -> Vec<WindowResult> {
        results.sort_by_key(|r| {
            (
                r.end,
                key_group(&r.key, MAX_PARALLELISM),
                r.key.clone(),
                r.start,
            )
        });
        results
    }

    use Number::{Float as F, Int as I};
    use ResultKind::{Final, Update};

    #[test]
    fn tumbling_all_aggregates() {
        let mut op = operator(&tumbling(10_000, 0), &all_aggs());
        assert_eq!(op.watermark(), i64::MIN);
        let inputs = vec![
            rec("alice", 5_000, 1, all_inputs(I(7), "y")),
            rec("alice", 1_000, 0, all_inputs(I(3), "x")),
            rec("bob", 2_000, 2, all_inputs(I(10), "q")),
            rec("alice", 9_999, 3, all_inputs(F(2.5), "x")),
            rec("alice", 10_000, 4, all_inputs(I(1), "z")),
        ];
        let (out, late) = process(&mut op, &inputs);
        assert!(out.is_empty() && late.is_empty());
        assert_eq!(op.next_fire_time(), Some(9_999));
        assert!(advance(&mut op, 9_998).is_empty());

        let fired = advance(&mut op, 9_999);
        let want = by_fire_order(vec![
            res(
                "alice",
                0,
                10_000,
                vec![
                    json!(3),
                    json!(12.5),
                    json!(2.5),
                    json!(7),
                    json!(12.5 / 3.0),
                    json!("x"),
                    json!("x"),
                    json!(2),
                ],
                Final,
            ),
            res(
                "bob",
                0,
                10_000,
                vec![
                    json!(1),
                    json!(10),
                    json!(10),
                    json!(10),
                    json!(10.0),
                    json!("q"),
                    json!("q"),
                    json!(1),
                ],
                Final,
            ),
        ]);
        assert_eq!(fired, want);
        // Lateness 0: fired windows are gone at once; only alice's second window is left.
        assert_eq!(op.state_mut().len(), 1);
        assert_eq!(op.next_fire_time(), Some(19_999));
        // Equal or lower watermarks are ignored.
        assert!(advance(&mut op, 5).is_empty());
        assert_eq!(op.watermark(), 9_999);

        let fired = advance(&mut op, i64::MAX);
        assert_eq!(
            fired,
            vec![res(
                "alice",
                10_000,
                20_000,
                vec![
                    json!(1),
                    json!(1),
                    json!(1),
                    json!(1),
                    json!(1.0),
                    json!("z"),
                    json!("z"),
                    json!(1)
                ],
                Final
            )]
        );
        assert!(op.state_mut().is_empty());
        assert_eq!(op.next_fire_time(), None);
    }

    #[test]
    fn sliding_membership_and_results() {
        let spec = window(WindowType::Sliding, 10_000, 2_000, 0, 0);
        let mut op = operator(&spec, &count_sum());
        process(
            &mut op,
            &[cs("alice", 7_000, 0, 1), cs("alice", 11_000, 1, 2)],
        );
        // ts 7000: starts -2000..=6000; ts 11000: starts 2000..=10000.
        assert_eq!(op.next_fire_time(), Some(7_999));
        let fired = advance(&mut op, 13_999);
        let r = |s: i64, n: i64, sum: i64| {
            res("alice", s, s + 10_000, vec![json!(n), json!(sum)], Final)
        };
        assert_eq!(
            fired,
            vec![r(-2_000, 1, 1), r(0, 1, 1), r(2_000, 2, 3), r(4_000, 2, 3)]
        );
        let fired = advance(&mut op, 30_000);
        assert_eq!(fired, vec![r(6_000, 2, 3), r(8_000, 1, 2), r(10_000, 1, 2)]);
        assert!(op.state_mut().is_empty());
    }

    #[test]
    fn session_merge_by_bridging_record() {
        for split in [true, false] {
            let mut op = operator(&session(5_000, 0), &count_sum());
            let a = cs("alice", 0, 0, 1);
            let b = cs("alice", 8_000, 1, 2);
            let bridge = cs("alice", 4_000, 2, 4);
            if split {
                process(&mut op, &[a, b]);
                // Two sessions: [0, 5000) and [8000, 13000).
                assert_eq!(op.next_fire_time(), Some(4_999));
                assert_eq!(op.state_mut().len(), 1);
                // [4000, 9000) touches both.
                process(&mut op, &[bridge]);
            } else {
                process(&mut op, &[b, bridge, a]);
            }
            // The first session's timer went with it.
            assert_eq!(op.next_fire_time(), Some(12_999));
            assert!(advance(&mut op, 12_998).is_empty());
            assert_eq!(
                advance(&mut op, 12_999),
                vec![res("alice", 0, 13_000, vec![json!(3), json!(7)], Final)]
            );
            assert!(op.state_mut().is_empty());
        }
    }

    #[test]
    fn sessions_of_different_keys_and_gaps() {
        let mut op = operator(&session(5_000, 0), &count_sum());
        process(
            &mut op,
            &[
                cs("alice", 0, 0, 1),
                cs("bob", 1_000, 1, 10),
                cs("alice", 5_000, 2, 2),  // touches [0, 5000)
                cs("alice", 10_001, 3, 3), // a new session
            ],
        );
        let fired = advance(&mut op, 20_000);
        assert_eq!(
            fired,
            vec![
                res("bob", 1_000, 6_000, vec![json!(1), json!(10)], Final),
                res("alice", 0, 10_000, vec![json!(2), json!(3)], Final),
                res("alice", 10_001, 15_001, vec![json!(1), json!(3)], Final),
            ]
        );
    }

    #[test]
    fn session_late_merge_emits_update() {
        let mut op = operator(&session(5_000, 10_000), &count_sum());
        process(&mut op, &[cs("alice", 0, 0, 1)]);
        assert_eq!(
            advance(&mut op, 6_000),
            vec![res("alice", 0, 5_000, vec![json!(1), json!(1)], Final)]
        );
        // Extends the fired session past the watermark: emitted when the watermark gets there,
        // as an update of what was emitted.
        let (out, late) = process(&mut op, &[cs("alice", 3_000, 1, 2)]);
        assert!(out.is_empty() && late.is_empty());
        assert_eq!(op.next_fire_time(), Some(7_999));
        assert_eq!(
            advance(&mut op, 7_999),
            vec![res("alice", 0, 8_000, vec![json!(2), json!(3)], Update)]
        );
        // Merges into the fired session without extending it: an update at once, once per call.
        let (out, late) = process(
            &mut op,
            &[cs("alice", 1_000, 2, 4), cs("alice", 2_000, 3, 8)],
        );
        assert!(late.is_empty());
        assert_eq!(
            out,
            vec![res("alice", 0, 8_000, vec![json!(4), json!(15)], Update)]
        );
        // Cleanup at 7999 + 10000.
        assert_eq!(op.next_fire_time(), Some(17_999));
        assert!(advance(&mut op, 20_000).is_empty());
        assert!(op.state_mut().is_empty());
        // [2000, 7000) expired at 16999 and merges with nothing: late.
        let (out, late) = process(
            &mut op,
            &[cs("alice", 30_000, 4, 1), cs("alice", 2_000, 5, 1)],
        );
        assert!(out.is_empty());
        assert_eq!(late, vec![1]);
    }

    #[test]
    fn late_session_within_lateness_opens_and_fires_at_once() {
        let mut op = operator(&session(5_000, 10_000), &count_sum());
        advance(&mut op, 9_000);
        // [1000, 6000) is past the watermark but not expired (5999 + 10000 > 9000).
        let (out, late) = process(&mut op, &[cs("alice", 1_000, 0, 5)]);
        assert!(late.is_empty());
        assert_eq!(
            out,
            vec![res("alice", 1_000, 6_000, vec![json!(1), json!(5)], Final)]
        );
        assert_eq!(op.next_fire_time(), Some(15_999));
    }

    #[test]
    fn allowed_lateness_updates_then_late() {
        let mut op = operator(&tumbling(10_000, 5_000), &count_sum());
        process(&mut op, &[cs("alice", 1_000, 0, 1)]);
        assert_eq!(
            advance(&mut op, 9_999),
            vec![res("alice", 0, 10_000, vec![json!(1), json!(1)], Final)]
        );
        // Two late records within lateness, one new window, one late record for bob's window
        // that has no state yet (emitted at once, as its first result).
        let (out, late) = process(
            &mut op,
            &[
                cs("alice", 2_000, 1, 2),
                cs("alice", 12_000, 2, 100),
                cs("alice", 3_000, 3, 3),
                cs("bob", 500, 4, 7),
            ],
        );
        assert!(late.is_empty());
        assert_eq!(
            out,
            by_fire_order(vec![
                res("alice", 0, 10_000, vec![json!(3), json!(6)], Update),
                res("bob", 0, 10_000, vec![json!(1), json!(7)], Final),
            ])
        );
        // Cleanup at 9999 + 5000.
        assert_eq!(op.next_fire_time(), Some(14_999));
        assert!(advance(&mut op, 14_998).is_empty());
        let (out, _) = process(&mut op, &[cs("alice", 4_000, 5, 4)]);
        assert_eq!(
            out,
            vec![res("alice", 0, 10_000, vec![json!(4), json!(10)], Update)]
        );
        assert!(advance(&mut op, 14_999).is_empty());
        // Only alice's [10000, 20000) is left.
        assert_eq!(op.state_mut().len(), 1);
        let (out, late) = process(
            &mut op,
            &[
                cs("alice", 15_000, 6, 1),
                cs("alice", 5_000, 7, 1),
                cs("bob", 9_999, 8, 1),
            ],
        );
        assert!(out.is_empty());
        assert_eq!(late, vec![1, 2]);
        assert_eq!(
            advance(&mut op, 19_999),
            vec![res(
                "alice",
                10_000,
                20_000,
                vec![json!(2), json!(101)],
                Final
            )]
        );
        // Fired and kept for the lateness.
        assert_eq!(op.next_fire_time(), Some(24_999));
        assert!(advance(&mut op, 24_999).is_empty());
        assert!(op.state_mut().is_empty());
    }

    #[test]
    fn sliding_record_partly_expired_is_not_late() {
        let spec = window(WindowType::Sliding, 10_000, 5_000, 0, 0);
        let mut op = operator(&spec, &count_sum());
        advance(&mut op, 10_000);
        // ts 9000 is in [0, 10000) (expired) and [5000, 15000) (live).
        let (out, late) = process(&mut op, &[cs("a", 9_000, 0, 1), cs("a", 4_000, 1, 1)]);
        assert!(out.is_empty());
        assert_eq!(late, vec![1]);
        assert_eq!(
            advance(&mut op, 20_000),
            vec![res("a", 5_000, 15_000, vec![json!(1), json!(1)], Final)]
        );
    }

    #[test]
    fn sliding_gap_is_not_late() {
        let spec = window(WindowType::Sliding, 2_000, 5_000, 0, 0);
        let mut op = operator(&spec, &count_sum());
        let (out, late) = process(&mut op, &[cs("a", 3_000, 0, 1), cs("a", 5_500, 1, 1)]);
        assert!(out.is_empty() && late.is_empty());
        assert_eq!(
            advance(&mut op, 10_000),
            vec![res("a", 5_000, 7_000, vec![json!(1), json!(1)], Final)]
        );
    }

    /// A deterministic pseudo-random sequence (xorshift), so tests need no extra crates.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Records of three users about every 700 ms over a minute, with values and labels.
    fn stream() -> Vec<KeyedInput> {
        let users = ["alice", "bob", "carol"];
        (0..90)
            .map(|i| {
                let user = users[(i * 7 % 3) as usize];
                let v = if i % 4 == 0 { F(i as f64 / 4.0) } else { I(i) };
                let label = format!("l{}", i % 5);
                // Up to 1 s of jitter, so some sessions merge and some do not.
                let ts = i * 700 + (i * 37 % 11) * 100;
                rec(user, ts, i, all_inputs(v, &label))
            })
            .collect()
    }

    /// Feeds `inputs` in batches of `batch`, advancing the watermark to the highest
    /// timestamp seen minus `bound` after each, and finally to the end.
    fn run_bounded(
        spec: &WindowSpec,
        inputs: &[KeyedInput],
        batch: usize,
        bound: i64,
    ) -> Vec<WindowResult> {
        let mut op = operator(spec, &all_aggs());
        let mut out = Vec::new();
        let mut max_ts = i64::MIN;
        for chunk in inputs.chunks(batch) {
            let mut late = Vec::new();
            op.process(chunk, &mut out, &mut late).unwrap();
            assert!(late.is_empty());
            max_ts = chunk.iter().map(|r| r.timestamp).fold(max_ts, i64::max);
            op.advance_watermark(max_ts - bound, &mut out).unwrap();
        }
        op.advance_watermark(i64::MAX, &mut out).unwrap();
        assert!(op.state_mut().is_empty());
        out
    }

    #[test]
    fn out_of_order_within_bound_gives_sorted_results() {
        let sorted = stream();
        // Shuffle within chunks of 5 records (at most 3.8 s apart), less than the 5 s bound.
        let mut shuffled = sorted.clone();
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for chunk in shuffled.chunks_mut(5) {
            for i in (1..chunk.len()).rev() {
                let j = (xorshift(&mut seed) % (i as u64 + 1)) as usize;
                chunk.swap(i, j);
            }
        }
        assert_ne!(sorted, shuffled);
        for spec in [
            tumbling(10_000, 0),
            window(WindowType::Sliding, 10_000, 2_000, 0, 0),
            session(2_200, 0),
        ] {
            let want = run_bounded(&spec, &sorted, 1, 5_000);
            assert!(!want.is_empty());
            assert!(want.iter().all(|r| r.kind == Final));
            for batch in [1, 4, 17] {
                assert_eq!(
                    run_bounded(&spec, &shuffled, batch, 5_000),
                    want,
                    "{spec:?}"
                );
            }
            assert_eq!(run_bounded(&spec, &sorted, 90, 5_000), want);
        }
    }

    #[test]
    fn firing_order_is_end_key_group_key() {
        let users: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
        let mut inputs: Vec<KeyedInput> = users
            .iter()
            .enumerate()
            .flat_map(|(i, u)| {
                [
                    cs(u, 1_000 + i as i64, i as i64, 1),
                    cs(u, 12_000, 100 + i as i64, 2),
                ]
            })
            .collect();
        let run = |inputs: &[KeyedInput]| {
            let mut op = operator(&tumbling(10_000, 0), &count_sum());
            process(&mut op, inputs);
            advance(&mut op, 100_000)
        };
        let forward = run(&inputs);
        inputs.reverse();
        assert_eq!(run(&inputs), forward);
        assert_eq!(forward.len(), 40);
        let order: Vec<_> = forward
            .iter()
            .map(|r| (r.end, key_group(&r.key, MAX_PARALLELISM), r.key.clone()))
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }

    /// Steps of a scenario: records, or a watermark.
    enum Step {
        Records(Vec<KeyedInput>),
        Watermark(i64),
    }

    fn run_steps(op: &mut WindowOperator, steps: &[Step]) -> (Vec<WindowResult>, Vec<usize>) {
        let (mut out, mut late) = (Vec::new(), Vec::new());
        for step in steps {
            match step {
                Step::Records(r) => op.process(r, &mut out, &mut late).unwrap(),
                Step::Watermark(w) => op.advance_watermark(*w, &mut out).unwrap(),
            }
        }
        (out, late)
    }

    #[test]
    fn restore_continues_identically() {
        let specs = [
            tumbling(10_000, 3_000),
            window(WindowType::Sliding, 10_000, 2_000, 0, 3_000),
            session(1_000, 3_000),
        ];
        for spec in specs {
            let all = stream();
            let before = vec![
                Step::Records(all[..30].to_vec()),
                Step::Watermark(12_000),
                Step::Records(all[30..40].to_vec()),
                // Late records within lateness for fired windows.
                Step::Records(vec![rec("alice", 9_500, 1_000, all_inputs(I(5), "late"))]),
            ];
            let after = vec![
                Step::Records(vec![rec("bob", 9_800, 1_001, all_inputs(I(6), "late2"))]),
                Step::Records(all[40..].to_vec()),
                Step::Watermark(40_000),
                Step::Records(vec![rec("carol", 100, 1_002, all_inputs(I(1), "too late"))]),
                Step::Watermark(i64::MAX),
            ];

            let mut op = operator(&spec, &all_aggs());
            run_steps(&mut op, &before);
            let wm = op.watermark();
            let next = op.next_fire_time();
            let pending = op.pending_timers();

            let dir = tempfile::tempdir().unwrap();
            let files = op.state_mut().snapshot(dir.path()).unwrap();
            let mut backend = HeapBackend::new(0..MAX_PARALLELISM);
            backend.restore(&files, 0..MAX_PARALLELISM).unwrap();
            let mut restored = WindowOperator::new(&spec, &all_aggs(), Box::new(backend)).unwrap();
            let mut overdue = Vec::new();
            restored.restore_timers(wm, &mut overdue).unwrap();
            assert_eq!(overdue, vec![]);
            assert_eq!(restored.watermark(), wm);
            assert_eq!(restored.next_fire_time(), next);
            assert_eq!(restored.pending_timers(), pending);

            let want = run_steps(&mut op, &after);
            assert!(!want.0.is_empty());
            assert_eq!(want.1, vec![0]);
            assert!(want.0.iter().any(|r| r.kind == Update), "{spec:?}");
            assert_eq!(run_steps(&mut restored, &after), want, "{spec:?}");
        }
    }

    #[test]
    fn windows_restored_behind_the_watermark_fire_at_restore() {
        for lateness in [0, 20_000] {
            let spec = tumbling(10_000, lateness);
            let mut op = operator(&spec, &count_sum());
            // State written while the watermark was still low: nothing fired yet.
            let (out, late) = process(
                &mut op,
                &[
                    cs("alice", 1_000, 0, 1),
                    cs("bob", 12_000, 1, 2),
                    cs("alice", 25_000, 2, 3),
                ],
            );
            assert!(out.is_empty() && late.is_empty());
            let dir = tempfile::tempdir().unwrap();
            let files = op.state_mut().snapshot(dir.path()).unwrap();

            // Restored at a watermark past the first window's end: it fires at once, as
            // Final, and the others wait for their time.
            let mut backend = HeapBackend::new(0..MAX_PARALLELISM);
            backend.restore(&files, 0..MAX_PARALLELISM).unwrap();
            let mut restored = WindowOperator::new(&spec, &count_sum(), Box::new(backend)).unwrap();
            let mut fired = Vec::new();
            restored.restore_timers(15_000, &mut fired).unwrap();
            assert_eq!(
                fired,
                vec![res("alice", 0, 10_000, vec![json!(1), json!(1)], Final)],
                "lateness {lateness}"
            );
            assert_eq!(restored.watermark(), 15_000);
            // Dropped at once without lateness; kept (and never fired again) with it.
            let kept = restored.state_mut().len();
            assert_eq!(
                kept,
                if lateness == 0 { 2 } else { 3 },
                "lateness {lateness}"
            );
            assert_eq!(
                advance(&mut restored, 20_000),
                vec![res("bob", 10_000, 20_000, vec![json!(1), json!(2)], Final)]
            );
            assert_eq!(
                advance(&mut restored, i64::MAX),
                vec![res(
                    "alice",
                    20_000,
                    30_000,
                    vec![json!(1), json!(3)],
                    Final
                )]
            );
            assert_eq!(restored.state_mut().len(), 0);
        }
    }

    #[test]
    fn corrupt_state_is_an_error() {
        let mut op = operator(&tumbling(10_000, 0), &count_sum());
        let r = cs("alice", 1_000, 0, 1);
        let sk = Codec::window_key(&r.key, 0);
        op.state_mut()
            .put(r.key_group, &sk, b"\x01garbage")
            .unwrap();
        let err = op.process(std::slice::from_ref(&r), &mut Vec::new(), &mut Vec::new());
        assert!(matches!(err, Err(WindowError::Corrupt(_))), "{err:?}");
        assert!(matches!(
            op.restore_timers(0, &mut Vec::new()),
            Err(WindowError::Corrupt(_))
        ));

        // A valid value under the wrong window type.
        let mut sessions = operator(&session(1_000, 0), &count_sum());
        let mut tumble = operator(&tumbling(10_000, 0), &count_sum());
        process(&mut tumble, std::slice::from_ref(&r));
        let mut entries = Vec::new();
        tumble
            .state_mut()
            .for_each(&mut |kg, k, v| entries.push((kg, k.to_vec(), v.to_vec())))
            .unwrap();
        for (kg, k, v) in entries {
            sessions.state_mut().put(kg, &k, &v).unwrap();
        }
        assert!(matches!(
            sessions.restore_timers(0, &mut Vec::new()),
            Err(WindowError::Corrupt(_))
        ));

        // The same value under other aggregates.
        let mut other = operator(&tumbling(10_000, 0), &all_aggs());
        let value = tumble.state_mut().get(r.key_group, &sk).unwrap().unwrap();
        other.state_mut().put(r.key_group, &sk, &value).unwrap();
        assert!(matches!(
            other.restore_timers(0, &mut Vec::new()),
            Err(WindowError::Corrupt(_))
        ));

        // Entries that are not the window operator's are ignored.
        let mut op = operator(&tumbling(10_000, 0), &count_sum());
        op.state_mut().put(0, b"\x00other", b"x").unwrap();
        op.restore_timers(0, &mut Vec::new()).unwrap();
        assert_eq!(op.next_fire_time(), None);
    }

    #[test]
    fn state_encoding_is_ordered_and_self_describing() {
        let key = key_bytes("k");
        let neg = Codec::window_key(&key, -10_000);
        let zero = Codec::window_key(&key, 0);
        let pos = Codec::window_key(&key, 10_000);
        assert!(neg < zero && zero < pos);
        assert_eq!(neg[0], TAG_WINDOW);
        assert_eq!(&zero[1..1 + key.len()], &key[..]);
        let mut op = operator(&tumbling(10_000, 0), &count_sum());
        let r = cs("k", 1_000, 0, 1);
        process(&mut op, std::slice::from_ref(&r));
        let value = op.state_mut().get(r.key_group, &zero).unwrap().unwrap();
        assert_eq!(value[0], FORMAT_VERSION);
        let entry: Entry = postcard::from_bytes(&value[1..]).unwrap();
        assert_eq!(entry.key_json, r#"{"user":"k"}"#);
        assert_eq!((entry.windows[0].start, entry.windows[0].end), (0, 10_000));
        assert!(!entry.windows[0].fired);
    }
}
