//! `drill`: a restore test. Each component's newest snapshot is restored into a scratch place
//! (a directory under the drill directory; for a command component with a `[drill]` table,
//! its scratch target such as a scratch database), proven (every blob authenticated and its
//! id re-derived; restored files re-read and compared with the snapshot), probed (the
//! component's `probe` must succeed against the copy), timed, recorded and cleaned up.
//! Nothing live is touched.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use super::alert::Notifier;
use super::audit::{self, Entry, Outcome};
use super::component::{Destination, put_back, versions};
use super::config::Component;
use super::handle::Site;
use super::hooks::{HookEnv, run_command, run_hooks};
use super::lock::lock_component;
use super::run::event;
use super::status::Version;
use crate::error::{Error, Result};
use crate::repo::Repository;

/// One component's drill.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrillResult {
    /// The component.
    pub component: String,
    /// The snapshot restored.
    pub snapshot: Option<Version>,
    /// Whether the restore, its proof and the probe succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Bytes restored.
    pub bytes: u64,
    /// Files whose content was re-read and compared.
    pub verified: u64,
    /// What the probe printed (its end).
    pub probe_output: Option<String>,
    /// The time the restore and proof took: this component's recovery time.
    pub duration_s: f64,
}

/// What `drill` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrillReport {
    /// Per component.
    pub components: Vec<DrillResult>,
    /// True when every drill passed.
    pub ok: bool,
    /// Wall time, seconds.
    pub duration_s: f64,
}

/// A scratch directory removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn drill_one(site: &Site, repo: &Repository, comp: &Component) -> DrillResult {
    let started = Instant::now();
    let mut r = DrillResult {
        component: comp.name.clone(),
        ..DrillResult::default()
    };
    let outcome = (|| -> Result<()> {
        let _lock = lock_component(
            &site.config.state_dir,
            &format!("{}.drill", comp.name),
            "drill",
        )?;
        let (id, snap) = versions(repo, &comp.name)?
            .pop()
            .ok_or_else(|| Error::Invalid(format!("{} has no snapshot to drill", comp.name)))?;
        r.snapshot = Some(Version::of(&id, &snap));
        let mut rnd = [0u8; 6];
        crate::crypto::random_bytes(&mut rnd);
        let dir =
            site.config
                .drill_dir
                .join(format!("cairn-drill-{}-{}", comp.name, hex::encode(rnd)));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let scratch = ScratchDir(dir);
        let env = HookEnv::new(&comp.name, "drill")
            .with("SNAPSHOT", id.to_hex())
            .with("DRILL_DIR", scratch.0.display().to_string());
        let drill = comp.drill.clone().unwrap_or_default();
        let restored = run_hooks("drill before", &drill.before, &env).and_then(|()| {
            let restored = put_back(
                site,
                repo,
                comp,
                (&id, &snap),
                &Destination::Scratch(scratch.0.clone()),
                &env,
            )?;
            r.bytes = restored.bytes;
            r.verified = restored.verified;
            if let Some(probe) = &comp.probe {
                let copy = restored
                    .copy
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let env = env.clone().with("RESTORED", copy);
                r.probe_output = Some(run_command(probe, &format!("probe `{probe}`"), &env)?);
            }
            Ok(())
        });
        // The scratch target goes, whatever happened.
        let cleaned = run_hooks("drill after", &drill.after, &env);
        restored.and(cleaned)
    })();
    if let Err(e) = outcome {
        r.error = Some(e.to_string());
    } else {
        r.ok = true;
    }
    r.duration_s = started.elapsed().as_secs_f64();
    r
}

/// Drills the components `targets` select (profiles or components; all when empty).
pub fn drill(site: &Site, targets: &[String]) -> Result<DrillReport> {
    let started = Instant::now();
    let comps = site.config.select(targets)?;
    let repo = site.open()?;
    let mut report = DrillReport::default();
    let mut n = Notifier::new(&site.config.alerts);
    for comp in comps {
        let r = drill_one(site, &repo, comp);
        let outcome = Outcome {
            time: Utc::now(),
            ok: r.ok,
            snapshot: r.snapshot.as_ref().map(|v| v.id.to_hex()),
            error: r.error.clone(),
            duration_s: r.duration_s,
        };
        audit::update(&site.config.state_dir, |s| {
            let st = s.components.entry(comp.name.clone()).or_default();
            st.last_drill = Some(outcome.clone());
            if outcome.ok {
                st.last_good_drill = Some(outcome.clone());
            }
        })?;
        let mut entry = Entry::new("drill", &site.host());
        entry.components = vec![comp.name.clone()];
        entry.snapshots = outcome.snapshot.iter().cloned().collect();
        entry.result = if r.ok { "ok" } else { "failed" }.into();
        entry.error = r.error.clone();
        entry.duration_s = r.duration_s;
        entry.detail = serde_json::json!({ "bytes": r.bytes, "verified": r.verified, "probe_output": r.probe_output });
        audit::append(&site.config.state_dir, &entry)?;
        if !r.ok {
            let snap = r.snapshot.as_ref().map(|v| v.id);
            n.event(&event(
                site,
                "drill_failed",
                Some(&comp.name),
                snap.as_ref(),
                r.error.clone().unwrap_or_default(),
            ));
        }
        report.components.push(r);
    }
    report.ok = report.components.iter().all(|r| r.ok);
    report.duration_s = started.elapsed().as_secs_f64();
    n.finish();
    Ok(report)
}
