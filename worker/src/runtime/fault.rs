//! Faults injected by tests (`RIVULET_FAULT`): a crash right after a manifest is written and
//! before its commit, a crash instead of a commit, a slow at-least-once sink, a slow
//! source, and slow processing.

/// A fault to inject, for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Abort right after writing the manifest of checkpoint `>= from`, before the commit.
    AfterManifest { from: u64 },
    /// An at-least-once sink that takes at most `per_second` records per second.
    SlowSink { per_second: u64 },
    /// A source that returns at most `per_second` records per second (since the attempt
    /// started), so a small backlog takes a while to read.
    SlowSource { per_second: u64 },
    /// Processing that takes `1 / per_second` seconds a record, spent busy (a costly
    /// pipeline): the worker processes at most `per_second` records per second, and its busy
    /// ratio says so.
    SlowProcessing { per_second: u64 },
    /// Abort instead of committing the output of an epoch `>= from`, whether on the
    /// coordinator's word or when settling a restored checkpoint: every worker with this
    /// fault dies with that output uncommitted.
    BeforeCommit { from: u64 },
}

impl Fault {
    /// Parses `after-manifest`, `after-manifest:N`, `before-commit:N`, `slow-sink:N`,
    /// `slow-source:N` or `slow-processing:N`.
    pub fn parse(s: &str) -> Option<Fault> {
        let s = s.trim();
        if s == "after-manifest" {
            return Some(Fault::AfterManifest { from: 0 });
        }
        if let Some(n) = s.strip_prefix("before-commit:") {
            return Some(Fault::BeforeCommit {
                from: n.parse().ok()?,
            });
        }
        if let Some(n) = s.strip_prefix("slow-source:") {
            return Some(Fault::SlowSource {
                per_second: n.parse().ok()?,
            });
        }
        if let Some(n) = s.strip_prefix("slow-processing:") {
            return Some(Fault::SlowProcessing {
                per_second: n.parse().ok()?,
            });
        }
        if let Some(n) = s.strip_prefix("slow-sink:") {
            return Some(Fault::SlowSink {
                per_second: n.parse().ok()?,
            });
        }
        let n = s.strip_prefix("after-manifest:")?.parse().ok()?;
        Some(Fault::AfterManifest { from: n })
    }

    /// With [`Fault::BeforeCommit`]: aborts the process if epoch `epoch` is to be committed.
    pub(super) fn before_commit(fault: Option<Fault>, epoch: u64) {
        if let Some(Fault::BeforeCommit { from }) = fault {
            if epoch >= from {
                tracing::error!(epoch, "fault injection: aborting before the commit");
                std::process::abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn faults_parse() {
        assert_eq!(
            Fault::parse("after-manifest"),
            Some(Fault::AfterManifest { from: 0 })
        );
        assert_eq!(
            Fault::parse("after-manifest:4"),
            Some(Fault::AfterManifest { from: 4 })
        );
        assert_eq!(
            Fault::parse(" before-commit:3 "),
            Some(Fault::BeforeCommit { from: 3 })
        );
        assert_eq!(
            Fault::parse("slow-sink:1000"),
            Some(Fault::SlowSink { per_second: 1000 })
        );
        assert_eq!(
            Fault::parse("slow-source:20000"),
            Some(Fault::SlowSource { per_second: 20_000 })
        );
        assert_eq!(
            Fault::parse("slow-processing:2000"),
            Some(Fault::SlowProcessing { per_second: 2_000 })
        );
        assert_eq!(Fault::parse("before-commit"), None);
        assert_eq!(Fault::parse("sometimes"), None);
    }
}
