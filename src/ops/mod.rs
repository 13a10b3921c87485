//! The commands, over an open repository. Nothing here prints: each returns a report that the
//! CLI renders as text or JSON.

pub mod browse;
pub mod check;
pub mod diff;
pub mod pattern;
pub mod progress;
pub mod restore;
pub mod snapshot;
pub mod stats;
pub mod walk;
