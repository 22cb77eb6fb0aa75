//! Window assignment: which windows a timestamp belongs to. Pure arithmetic, no state.
//!
//! - Tumbling windows of `size`: the one window `[floor(ts / size) * size, + size)`, with
//!   floor division, so negative timestamps (before 1970) land in the right window.
//! - Sliding windows of `size` every `slide`: every window `[k * slide, k * slide + size)`
//!   that contains `ts`, ordered by start. When `slide > size` some timestamps fall between
//!   windows and belong to none.
//! - Session windows with `gap`: a record opens `[ts, ts + gap)`; merging is the operator's
//!   job ([`Window::intersects`], [`Window::cover`]).
//!
//! Arithmetic is done in `i128` and saturated to `i64`, so timestamps near the ends of the
//! range never overflow.

use rivulet_api::spec::{WindowSpec, WindowType};

/// A window `[start, end)` in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }

    /// The largest timestamp inside the window; it fires once the watermark reaches this.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// The watermark at which the window's state is dropped.
    pub fn cleanup_time(&self, allowed_lateness: i64) -> i64 {
        self.max_timestamp().saturating_add(allowed_lateness)
    }

    /// Whether the window accepts no more records at `watermark`.
    pub fn is_expired(&self, allowed_lateness: i64, watermark: i64) -> bool {
        self.cleanup_time(allowed_lateness) <= watermark
    }

    /// Whether two session windows merge (Flink's rule: touching windows merge too).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

fn saturate(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The tumbling window of `size` (> 0) containing `ts`.
pub fn tumbling(ts: i64, size: i64) -> Window {
    let size = i128::from(size.max(1));
    let start = i128::from(ts).div_euclid(size) * size;
    Window::new(saturate(start), saturate(start + size))
}

/// The sliding windows of `size` every `slide` (both > 0) containing `ts`, by start.
pub fn sliding(ts: i64, size: i64, slide: i64) -> impl Iterator<Item = Window> {
    let (ts, size, slide) = (
        i128::from(ts),
        i128::from(size.max(1)),
        i128::from(slide.max(1)),
    );
    // Starts are multiples of `slide` in `(ts - size, ts]`.
    let last = ts.div_euclid(slide) * slide;
    let first = (ts - size).div_euclid(slide) * slide + slide;
    let count = if first > last {
        0
    } else {
        (last - first) / slide + 1
    };
    (0..count).map(move |k| {
        let start = first + k * slide;
        Window::new(saturate(start), saturate(start + size))
    })
}

/// The session window a record at `ts` opens.
pub fn session(ts: i64, gap: i64) -> Window {
    Window::new(ts, ts.saturating_add(gap.max(1)))
}

/// A window assigner built from a validated [`WindowSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assigner {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

impl Assigner {
    /// The assigner of `spec`; an error names the missing or zero field.
    pub fn from_spec(spec: &WindowSpec) -> Result<Assigner, String> {
        let millis = |d: Option<rivulet_api::duration::Duration>, field: &str| match d
            .map(|d| d.as_millis_i64())
        {
            Some(ms) if ms > 0 => Ok(ms),
            Some(_) => Err(format!("window.{field} must be at least 1ms")),
            None => Err(format!("window.{field} is required")),
        };
        Ok(match spec.kind {
            WindowType::Tumbling => Assigner::Tumbling {
                size: millis(spec.size, "size")?,
            },
            WindowType::Sliding => Assigner::Sliding {
                size: millis(spec.size, "size")?,
                slide: millis(spec.slide, "slide")?,
            },
            WindowType::Session => Assigner::Session {
                gap: millis(spec.gap, "gap")?,
            },
        })
    }

    pub fn is_session(&self) -> bool {
        matches!(self, Assigner::Session { .. })
    }

    /// Appends the windows `ts` belongs to (by start); for sessions, the window it opens.
    pub fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        match *self {
            Assigner::Tumbling { size } => out.push(tumbling(ts, size)),
            Assigner::Sliding { size, slide } => out.extend(sliding(ts, size, slide)),
            Assigner::Session { gap } => out.push(session(ts, gap)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_api::duration::Duration;

    fn w(start: i64, end: i64) -> Window {
        Window::new(start, end)
    }

    fn slides(ts: i64, size: i64, slide: i64) -> Vec<Window> {
        sliding(ts, size, slide).collect()
    }

    #[test]
    fn tumbling_windows() {
        assert_eq!(tumbling(0, 10), w(0, 10));
        assert_eq!(tumbling(9, 10), w(0, 10));
        assert_eq!(tumbling(10, 10), w(10, 20));
        assert_eq!(tumbling(12_345, 1000), w(12_000, 13_000));
        // Negative timestamps: floor, not truncation toward zero.
        assert_eq!(tumbling(-1, 10), w(-10, 0));
        assert_eq!(tumbling(-10, 10), w(-10, 0));
        assert_eq!(tumbling(-11, 10), w(-20, -10));
        // The ends of the range saturate instead of overflowing.
        assert_eq!(tumbling(i64::MAX, 10).end, i64::MAX);
        assert_eq!(tumbling(i64::MIN, 10).start, i64::MIN);
    }

    #[test]
    fn sliding_windows() {
        // size 10, slide 2: five windows, by start.
        assert_eq!(
            slides(7, 10, 2),
            vec![w(-2, 8), w(0, 10), w(2, 12), w(4, 14), w(6, 16)]
        );
        assert_eq!(
            slides(10, 10, 2),
            vec![w(2, 12), w(4, 14), w(6, 16), w(8, 18), w(10, 20)]
        );
        // Negative timestamps.
        assert_eq!(
            slides(-3, 10, 2),
            vec![w(-12, -2), w(-10, 0), w(-8, 2), w(-6, 4), w(-4, 6)]
        );
        // Size not a multiple of slide: 5 every 2.
        assert_eq!(slides(7, 5, 2), vec![w(4, 9), w(6, 11)]);
        assert_eq!(slides(6, 5, 2), vec![w(2, 7), w(4, 9), w(6, 11)]);
        assert_eq!(slides(-1, 5, 2), vec![w(-4, 1), w(-2, 3)]);
        // Slide larger than size: gaps.
        assert_eq!(slides(6, 2, 5), vec![w(5, 7)]);
        assert_eq!(slides(7, 2, 5), vec![]);
        // Slide equal to size is tumbling.
        assert_eq!(slides(-11, 10, 10), vec![tumbling(-11, 10)]);
    }

    #[test]
    fn sliding_membership_is_exact() {
        for (size, slide) in [(10, 2), (5, 2), (7, 3), (2, 5), (1, 1)] {
            for ts in -40..40 {
                let got = slides(ts, size, slide);
                let want: Vec<Window> = (-100..100)
                    .map(|k| w(k * slide, k * slide + size))
                    .filter(|win| win.start <= ts && ts < win.end)
                    .collect();
                assert_eq!(got, want, "ts {ts} size {size} slide {slide}");
            }
        }
    }

    #[test]
    fn sessions() {
        assert_eq!(session(5, 10), w(5, 15));
        assert!(w(0, 10).intersects(&w(10, 20)));
        assert!(w(10, 20).intersects(&w(0, 10)));
        assert!(!w(0, 10).intersects(&w(11, 20)));
        assert_eq!(w(0, 10).cover(&w(5, 20)), w(0, 20));
        assert_eq!(w(0, 10).max_timestamp(), 9);
        assert_eq!(w(0, 10).cleanup_time(5), 14);
        assert!(w(0, 10).is_expired(5, 14));
        assert!(!w(0, 10).is_expired(5, 13));
    }

    #[test]
    fn assigner_from_spec() {
        let spec = WindowSpec {
            kind: WindowType::Sliding,
            size: Some(Duration::from_secs(10)),
            slide: Some(Duration::from_secs(2)),
            gap: None,
            allowed_lateness: Duration::ZERO,
        };
        let a = Assigner::from_spec(&spec).unwrap();
        assert_eq!(
            a,
            Assigner::Sliding {
                size: 10_000,
                slide: 2_000
            }
        );
        let mut out = Vec::new();
        a.assign(1_000, &mut out);
        assert_eq!(out.len(), 5);
        let bad = WindowSpec {
            slide: None,
            ..spec
        };
        assert_eq!(
            Assigner::from_spec(&bad).unwrap_err(),
            "window.slide is required"
        );
    }
}
