//! Progress of long operations (snapshot, restore, check), reported to whoever shows it. The
//! operations only count; the command-line layer draws bars, and only on a terminal.

use std::fmt;
use std::sync::Arc;

/// Receives progress. Called from worker threads, so it must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// The total amount of bytes expected (may be an estimate, and may be set again).
    fn total(&self, bytes: u64);
    /// `items` (files or packs) and `bytes` more are done.
    fn advance(&self, items: u64, bytes: u64);
}

/// An optional [`Progress`] receiver, as carried in operation options.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Progress>>);

impl ProgressSink {
    /// Reports to `p`.
    pub fn new(p: Arc<dyn Progress>) -> Self {
        ProgressSink(Some(p))
    }

    /// See [`Progress::total`].
    pub fn total(&self, bytes: u64) {
        if let Some(p) = &self.0 {
            p.total(bytes);
        }
    }

    /// See [`Progress::advance`].
    pub fn advance(&self, items: u64, bytes: u64) {
        if let Some(p) = &self.0 {
            p.advance(items, bytes);
        }
    }
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(on)"
        } else {
            "ProgressSink(off)"
        })
    }
}
