//! A site: the components of one production host (configs, databases, volumes), described by
//! one config file (`cairn.toml`), and the operations over them: `run`, `versions`,
//! `rollback`, `recover`, `status`, `drill`, schedules and the daemon.
//!
//! This layer sits above [`ops`](crate::ops): every operation here is a sequence of the same
//! library calls the plain commands make (snapshot, restore, forget, copy, check), so the CLI,
//! the daemon and any other front end share one code path. Nothing here prints: each
//! operation returns a report, and what an operator must be told later (failures, limits
//! crossed) goes to the audit log, the state file and the configured webhooks.

pub mod alert;
pub mod audit;
pub mod component;
pub mod config;
pub mod cron;
pub mod daemon;
pub mod drill;
pub mod hooks;
pub mod lock;
pub mod rollback;
pub mod run;
pub mod schedule;
pub mod status;
pub mod upkeep;

pub use config::{Config, load};
pub use handle::{PasswordFallback, Site, WarningSink, first_line, read_password};

mod handle;
