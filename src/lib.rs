//! cairn: content-addressed, deduplicating, encrypted backups.
//!
//! Layers, from the bottom: [`id`], [`crypto`], [`chunker`] and [`backend`] know nothing of
//! each other's callers; [`tree`] encodes directory listings; [`repo`] is the only module that
//! knows the repository format; [`source`] reads what a snapshot stores; [`ops`] implements the
//! commands; [`site`] runs a config's components through them; [`server`] serves the site's
//! operations over HTTP; the binary's `cli` renders them.

#![warn(missing_docs)]

pub mod backend;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod id;
pub mod ops;
pub mod repo;
pub mod server;
pub mod site;
pub mod source;
pub mod tree;

pub use error::{Error, Result};
