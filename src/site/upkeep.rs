//! The repository-wide jobs a site schedules: `check` and `prune`, recorded in the state
//! file (the last check is part of `status`) and the audit log, whoever started them.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::audit::{self, Entry, Outcome};
use super::config::Schedule;
use super::handle::Site;
use crate::error::{Error, Result};
use crate::ops::check::{CheckOptions, CheckReport, DataProof, DataSubset, check};
use crate::ops::prune::{PruneOptions, PruneReport, prune};
use crate::repo::Repository;

/// Records a check's outcome.
pub fn record_check(site: &Site, r: &CheckReport, duration: Duration) -> Result<()> {
    let ok = r.errors.is_empty();
    let error = r.errors.first().map(|f| {
        format!(
            "{} errors; the first: {}: {}",
            r.errors.len(),
            f.what,
            f.problem
        )
    });
    let outcome = Outcome {
        time: Utc::now(),
        ok,
        snapshot: None,
        error: error.clone(),
        duration_s: duration.as_secs_f64(),
    };
    audit::update(&site.config.state_dir, |s| s.last_check = Some(outcome))?;
    let mut e = Entry::new("check", &site.host());
    e.result = if ok { "ok" } else { "failed" }.into();
    e.error = error;
    e.duration_s = duration.as_secs_f64();
    e.detail = serde_json::json!({
        "packs_read": r.packs_read, "bytes_read": r.bytes_read,
        "packs_unproven": r.packs_unproven, "oldest_proof": r.oldest_proof,
    });
    audit::append(&site.config.state_dir, &e)
}

/// A budgeted daily check: `--read-data --max-age AGE --read-data-subset SUBSET`.
pub fn scheduled_check(site: &Site, repo: &Repository, s: &Schedule) -> Result<CheckReport> {
    let started = Instant::now();
    let opts = CheckOptions {
        read_data: Some(DataSubset::parse(&s.read_data_subset).map_err(Error::Invalid)?),
        max_age: Some(s.max_age),
        now: None,
        progress: Default::default(),
        snapshots: None,
        proof: if s.authenticate_only {
            DataProof::Seal
        } else {
            DataProof::Content
        },
    };
    let r = check(repo, &opts)?;
    record_check(site, &r, started.elapsed())?;
    Ok(r)
}

/// What `verify` proves.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Only these snapshots (`None`: the whole repository).
    pub snapshots: Option<Vec<crate::id::SnapshotId>>,
    /// Also read and authenticate the packs (of those snapshots).
    pub read_data: bool,
    /// Read only packs never proven or proven longer ago than this.
    pub max_age: Option<Duration>,
    /// Receives packs and bytes as they are read.
    pub progress: crate::ops::progress::ProgressSink,
    /// The component whose snapshots these are: the outcome is its last verification.
    pub component: Option<String>,
}

/// `check` for the site's callers (the service's `verify`): the whole repository, or only
/// some snapshots and the packs they use. A whole-repository check that read data is the
/// site's last verification (`status`); a scoped one goes to the audit log only.
pub fn verify(site: &Site, repo: &Repository, o: &VerifyOptions) -> Result<CheckReport> {
    let started = Instant::now();
    let opts = CheckOptions {
        read_data: (o.read_data || o.max_age.is_some()).then_some(DataSubset::All),
        max_age: o.max_age,
        now: None,
        progress: o.progress.clone(),
        snapshots: o.snapshots.clone(),
        proof: Default::default(),
    };
    let r = check(repo, &opts)?;
    match &o.snapshots {
        None if opts.read_data.is_some() => record_check(site, &r, started.elapsed())?,
        _ => {
            let mut e = Entry::new("verify", &site.host());
            e.snapshots = o.snapshots.iter().flatten().map(|s| s.to_hex()).collect();
            e.result = if r.errors.is_empty() { "ok" } else { "failed" }.into();
            e.error = r
                .errors
                .first()
                .map(|f| format!("{}: {}", f.what, f.problem));
            e.duration_s = started.elapsed().as_secs_f64();
            e.components = o.component.iter().cloned().collect();
            e.detail = serde_json::json!({ "read_data": opts.read_data.is_some(), "packs_read": r.packs_read });
            audit::append(&site.config.state_dir, &e)?;
            if let Some(c) = &o.component {
                let outcome = Outcome {
                    time: Utc::now(),
                    ok: r.errors.is_empty(),
                    snapshot: None,
                    error: e.error.clone(),
                    duration_s: e.duration_s,
                };
                audit::update(&site.config.state_dir, |s| {
                    s.components.entry(c.clone()).or_default().last_verify = Some(outcome);
                })?;
            }
        }
    }
    Ok(r)
}

/// Records a prune's outcome.
pub fn record_prune(
    site: &Site,
    r: std::result::Result<&PruneReport, &Error>,
    duration: Duration,
) -> Result<()> {
    let mut e = Entry::new("prune", &site.host());
    e.duration_s = duration.as_secs_f64();
    match r {
        Ok(r) => e.detail = serde_json::to_value(r).unwrap_or_default(),
        Err(err) => {
            e.result = "failed".into();
            e.error = Some(err.to_string());
        }
    }
    audit::append(&site.config.state_dir, &e)
}

/// A prune with the default limits.
pub fn scheduled_prune(site: &Site, repo: &Repository) -> Result<PruneReport> {
    let started = Instant::now();
    let r = prune(repo, &PruneOptions::default());
    record_prune(site, r.as_ref(), started.elapsed())?;
    r
}
