//! Progress of long operations (snapshot, restore, check), reported to whoever shows it. The
//! operations only count; the command-line layer draws bars, and only on a terminal.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

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

/// A request to stop a long operation early, shared with whoever may ask (a signal handler,
/// a job list). Operations look at it between entries, so they stop where the repository is
/// consistent: what was written is durable and unreferenced, and the next run reuses it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Option<Arc<AtomicBool>>);

impl Cancel {
    /// Stops when `flag` becomes true.
    pub fn new(flag: Arc<AtomicBool>) -> Self {
        Cancel(Some(flag))
    }

    /// Whether anyone can ask for a stop.
    pub fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `Err(Error::Cancelled)` once a stop was asked for.
    pub fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}
