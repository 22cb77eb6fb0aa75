//! The broker `rivulet run` starts in a work directory when a job names none, stopped when
//! the guard is dropped, even when the test fails.

use std::path::PathBuf;

use crate::bin_path;

/// Runs `rivulet broker stop` in its directory when dropped.
pub struct LocalBrokerGuard(pub PathBuf);

impl Drop for LocalBrokerGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new(bin_path("rivulet"))
            .current_dir(&self.0)
            .args(["broker", "stop"])
            .output();
    }
}
