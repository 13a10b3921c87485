//! `prune`: give back the space of blobs no snapshot uses, without locks.
//!
//! ```text
//! 1. list sessions            (who is running now; see repo::session)
//! 2. list snapshots, then read every index file → where each blob lies, which packs are
//!    marked and when                                              (temporary SQLite database)
//! 3. walk the listed snapshots' trees, each tree once → used blobs
//! 4. per pack: all used → keep; none used → mark; partly → repack if the unused share is
//!    over --max-unused; marked and used again → take back into use;
//!    marked, unused, every session recorded with it ended → delete
//! 5. repack: copy the used blobs' sealed bytes (verified, never decrypted to disk) into new
//!    packs, indexed as usual
//! 6. write the new index (packs in use + marked groups), then delete the old index files
//! 7. list sessions again: the new marks record them. If none runs and no snapshot appeared
//!    since step 2, nobody can rely on the new marks: they are deleted at once
//! 8. delete the packs found deletable
//! ```
//! Safety: a pack is deleted only when no snapshot read after every session that might use it
//! ended needs it. A run that loaded the index before the marks were written is a session
//! recorded with the marks; a run that starts later sees the marks and never deduplicates
//! against a marked pack (see `Cache::contains`). A crash at any step leaves either the old
//! index, or the new one, or both (a pack listed in use anywhere counts as in use): nothing
//! is deleted before the index that no longer needs it is durable.

mod usage;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, SessionId, SnapshotId};
use crate::repo::Repository;
use crate::repo::blob::open_blob;
use crate::repo::saver::BlobSaver;
use crate::repo::session::REFRESH;
use crate::tree::NodeKind;
use usage::{PackUse, Usage};

/// How much unused space may stay in partly used packs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxUnused {
    /// At most this percentage of the repository's data after prune.
    Percent(f64),
    /// At most this many bytes.
    Bytes(u64),
    /// Never repack for space.
    Unlimited,
}

impl std::str::FromStr for MaxUnused {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        if t == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage (e.g. 5%)"))?;
            if !(0.0..100.0).contains(&v) {
                return Err(format!(
                    "{s:?}: the percentage must be at least 0 and below 100"
                ));
            }
            return Ok(MaxUnused::Percent(v));
        }
        crate::ops::parse_size(t)
            .map(MaxUnused::Bytes)
            .map_err(|_| format!("{s:?} is neither a percentage (5%), a size (2G) nor `unlimited`"))
    }
}

/// Options of `prune`.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Tolerated unused space in partly used packs.
    pub max_unused: MaxUnused,
    /// Upper bound on the bytes of packs read for repacking in one run.
    pub max_repack: Option<u64>,
    /// Plan and report only.
    pub dry_run: bool,
    /// A session not refreshed for this long is considered over (its process died on
    /// another host, or it was suspended).
    pub stale_after: Duration,
    /// Marked packs are kept at least this long, whatever the sessions say.
    pub keep_marked: Duration,
    /// Packs to rewrite whatever their unused share (and outside `max_repack`): those in
    /// which `check --read-data` found damage that `repair snapshots --read-data` has cut
    /// out of every snapshot, so that the damage goes with them.
    pub repack: HashSet<PackId>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack: None,
            dry_run: false,
            stale_after: Duration::from_secs(3600),
            keep_marked: Duration::ZERO,
            repack: HashSet::new(),
        }
    }
}

/// What `prune` did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Snapshots read.
    pub snapshots: u64,
    /// Blobs they use.
    pub used_blobs: u64,
    /// Packs in use before.
    pub packs_before: u64,
    /// Their bytes.
    pub bytes_before: u64,
    /// Bytes of unused blobs in packs in use before.
    pub unused_bytes_before: u64,
    /// Packs newly marked because nothing uses them.
    pub packs_marked: u64,
    /// Packs rewritten.
    pub packs_repacked: u64,
    /// Bytes of used blobs copied by the repack.
    pub bytes_repacked: u64,
    /// Marked packs taken back into use (a snapshot written meanwhile needs them).
    pub packs_unmarked: u64,
    /// Packs deleted.
    pub packs_deleted: u64,
    /// Their bytes: the space given back.
    pub bytes_freed: u64,
    /// Marked packs still kept, waiting for the sessions that may rely on them.
    pub packs_waiting: u64,
    /// Their bytes (given back by a later prune).
    pub bytes_waiting: u64,
    /// Packs in use after.
    pub packs_after: u64,
    /// Sessions that keep marked packs from being deleted, as `host pid command`.
    pub waiting_for: Vec<String>,
    /// Session files removed because their run is over.
    pub stale_sessions_removed: u64,
    /// Index files written with the new index (repacked packs are indexed apart).
    pub index_written: u64,
    /// Index files removed.
    pub index_removed: u64,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Wall time.
    pub duration_s: f64,
}

/// What happens to a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Mark,
    /// Marked before and still waiting (its group number).
    Wait(i64),
    Unmark,
    Delete,
}

/// Stands in a new group's session list until the sessions that may have seen the old index
/// are known. A prune killed before it settles the list leaves it, and the next prune treats
/// the group as marked by itself: it cannot know who saw the old index, but every such run
/// still going is among the sessions it finds.
const UNSETTLED: SessionId = SessionId([0xff; 32]);

/// Sessions by liveness, from one listing.
struct Sessions {
    live: HashSet<SessionId>,
    dead: Vec<SessionId>,
    described: HashMap<SessionId, String>,
}

fn list_sessions(
    repo: &Repository,
    own: Option<SessionId>,
    stale_after: Duration,
) -> Result<Sessions> {
    let now = Utc::now();
    let (host, _) = crate::repo::whoami();
    let mut s = Sessions {
        live: HashSet::new(),
        dead: Vec::new(),
        described: HashMap::new(),
    };
    for (id, info) in repo.sessions()? {
        if Some(id) == own {
            continue;
        }
        match info {
            Ok(i) if !i.is_live(now, stale_after, &host) => s.dead.push(id),
            Ok(i) => {
                s.described
                    .insert(id, format!("{} pid {} ({})", i.host, i.pid, i.command));
                s.live.insert(id);
            }
            // Unreadable: assume it runs (it only delays deletion).
            Err(why) => {
                s.described
                    .insert(id, format!("sessions/{} (unreadable: {why})", id.short()));
                s.live.insert(id);
            }
        }
    }
    Ok(s)
}

/// Runs a prune.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let started = Instant::now();
    if opts.stale_after < 2 * REFRESH {
        return Err(Error::Invalid(format!(
            "--stale-after must be at least {} minutes: running commands refresh their session \
             every {} minutes, and a shorter margin would take them for gone",
            2 * REFRESH.as_secs() / 60,
            REFRESH.as_secs() / 60
        )));
    }
    let session = if opts.dry_run {
        None
    } else {
        repo.backend().remove_stale_temps()?;
        repo.begin_session("prune")?
    };
    let own = session.as_ref().map(|s| s.id());
    let mut rep = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    // 1. Sessions first: any that has ended by now wrote its snapshot before it ended.
    let before = list_sessions(repo, own, opts.stale_after)?;
    // Removed at once, before anything is decided: a suspended run that resumes from now on
    // finds its session gone and writes nothing.
    if !opts.dry_run {
        remove_sessions(repo, &before.dead, &mut rep)?;
    }
    // 2-3. Snapshots, then the index: every listed snapshot's blobs are in an index file
    // read after it (index files are written before their snapshot).
    let listed = repo.snapshot_ids()?;
    repo.sync_index()?;
    let (mut usage, old_index) = load_index(repo)?;
    // Refused before the walk: a mistyped pack id should cost nothing.
    for id in &opts.repack {
        if !usage.has_pack(id)? {
            return Err(Error::Invalid(format!(
                "pack {id} given to --repack is in no index or no longer stored (see \
                 `cairn check`)"
            )));
        }
    }
    let snapshot_ids = mark_used(repo, &mut usage, listed, &mut rep)?;
    let missing = usage.assign(&opts.repack)?;
    if missing > 0 {
        let sample: Vec<String> = usage.missing_sample()?.iter().map(BlobId::short).collect();
        return Err(Error::Invalid(format!(
            "{missing} blobs that snapshots use are in no pack (e.g. {}); prune stopped \
             without changing anything: run `cairn check` to see which snapshots are damaged",
            sample.join(", ")
        )));
    }
    rep.used_blobs = usage.used_count()?;
    // 4. Decide.
    let packs = usage.packs()?;
    let groups = usage.groups()?;
    let now = Utc::now().timestamp();
    // (A group whose packs are all gone is left as it is: nothing is decided about it.)
    let unsettled: HashSet<i64> = groups
        .iter()
        .filter(|g| g.sessions.contains(&UNSETTLED))
        .filter(|g| packs.iter().any(|p| p.group == Some(g.n)))
        .map(|g| g.n)
        .collect();
    let mut fates = decide(&packs, &unsettled, opts, &mut rep);
    for g in groups.iter().filter(|g| !unsettled.contains(&g.n)) {
        let aged = now.saturating_sub(g.marked_at) >= opts.keep_marked.as_secs() as i64;
        let ended = g.sessions.iter().all(|s| !before.live.contains(s));
        for p in packs.iter().filter(|p| p.group == Some(g.n)) {
            if fates[&p.id] == Fate::Wait(g.n) && aged && ended {
                fates.insert(p.id, Fate::Delete);
            }
        }
        if !ended {
            for s in g.sessions.iter().filter(|s| before.live.contains(s)) {
                rep.waiting_for.push(before.described[s].clone());
            }
        }
    }
    let to_repack = fates.values().filter(|f| **f == Fate::Repack).count() as u64;
    if opts.dry_run {
        // A real run would delete new marks at once if nothing else runs.
        if before.live.is_empty() && opts.keep_marked.is_zero() {
            for f in fates.values_mut() {
                if matches!(*f, Fate::Mark | Fate::Repack) {
                    *f = Fate::Delete;
                }
            }
        }
        tally(&packs, &fates, &mut rep);
        rep.packs_repacked = to_repack;
        rep.duration_s = started.elapsed().as_secs_f64();
        return Ok(rep);
    }
    if unsettled.is_empty()
        && fates
            .values()
            .all(|f| matches!(f, Fate::Keep | Fate::Wait(_)))
    {
        // Nothing changes: the index stays as it is, and so does every host's cache.
        tally(&packs, &fates, &mut rep);
        if let Some(s) = session {
            s.end()?;
        }
        rep.duration_s = started.elapsed().as_secs_f64();
        return Ok(rep);
    }
    // 5. Repack.
    let repacked = repack(repo, &usage, &packs, &fates, &mut rep)?;
    // 6. The new index, then the old one goes.
    let new_group = now;
    let written = write_index(repo, &usage, &packs, &fates, &groups, new_group)?;
    rep.index_written = written.len() as u64;
    for id in &old_index {
        repo.backend().delete(FileKind::Index, &id.to_hex())?;
        rep.index_removed += 1;
    }
    // 7. Who may have seen the old index? Record them with the new marks.
    let after = list_sessions(repo, own, opts.stale_after)?;
    let newly_dead: Vec<SessionId> = after
        .dead
        .iter()
        .filter(|s| !before.dead.contains(s))
        .copied()
        .collect();
    remove_sessions(repo, &newly_dead, &mut rep)?;
    let quiet = after.live.is_empty() && opts.keep_marked.is_zero() && {
        let now_ids: HashSet<SnapshotId> = repo.snapshot_ids()?.into_iter().collect();
        now_ids.is_subset(&snapshot_ids)
    };
    if quiet {
        for f in fates.values_mut() {
            if matches!(*f, Fate::Mark | Fate::Repack) {
                *f = Fate::Delete;
            }
        }
    } else {
        let mut sessions: Vec<SessionId> = after.live.iter().copied().collect();
        sessions.sort();
        rewrite_new_group(repo, &written, &sessions, new_group)?;
        for s in &sessions {
            rep.waiting_for.push(after.described[s].clone());
        }
    }
    rep.waiting_for.sort();
    rep.waiting_for.dedup();
    tally(&packs, &fates, &mut rep);
    rep.packs_repacked = repacked;
    // 8. Delete.
    for p in &packs {
        if fates[&p.id] == Fate::Delete {
            repo.backend().delete(FileKind::Pack, &p.id.to_hex())?;
        }
    }
    repo.sync_index()?;
    if let Some(s) = session {
        s.end()?;
    }
    rep.duration_s = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// Removes the session files of runs that are over.
fn remove_sessions(repo: &Repository, dead: &[SessionId], rep: &mut PruneReport) -> Result<()> {
    for s in dead {
        repo.backend().delete(FileKind::Session, &s.to_hex())?;
        rep.stale_sessions_removed += 1;
    }
    Ok(())
}

/// Reads every index file into a new usage database; forgets packs that no longer exist (a
/// marked pack deleted by a prune killed before it rewrote the index). Returns the database
/// and the files read. Another prune may replace index files meanwhile: a file that vanishes
/// under the listing makes the listing stale, and it is read again.
fn load_index(repo: &Repository) -> Result<(Usage, Vec<IndexId>)> {
    let mut tries = 0;
    loop {
        match load_index_once(repo) {
            Err(Error::Missing(_)) if tries < 10 => tries += 1,
            r => return r,
        }
    }
}

fn load_index_once(repo: &Repository) -> Result<(Usage, Vec<IndexId>)> {
    let mut usage = Usage::new()?;
    let mut ids = Vec::new();
    for (name, _) in repo.backend().list(FileKind::Index)? {
        let Ok(id) = name.parse::<IndexId>() else {
            continue;
        };
        let f = match repo.load_index(&id) {
            Ok(f) => f,
            Err(e @ Error::Missing(_)) => return Err(e),
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "{e}; prune stopped without changing anything (it must read every index \
                     file: run `cairn check`)"
                )));
            }
        };
        usage.batch(|u| u.add_index(&f))?;
        ids.push(id);
    }
    // Packs are listed only now that the index files are read. Every pack an index file
    // names was stored before that file was written, so one missing from this later listing
    // really was deleted. Listed before, a pack that a snapshot stored after that listing,
    // with its index file written before the files were read, would look deleted: it would
    // be left out of the new index while the index file naming it is removed with the old
    // ones, and the snapshot's blobs would be in no index at all.
    let stored: HashSet<String> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    usage.batch(|u| {
        for p in u.packs()? {
            if !stored.contains(&p.id.to_hex()) {
                u.drop_pack(&p.id)?;
            }
        }
        Ok(())
    })?;
    Ok((usage, ids))
}

/// Walks every snapshot's trees, each tree once, recording the blobs used.
fn mark_used(
    repo: &Repository,
    usage: &mut Usage,
    ids: Vec<SnapshotId>,
    rep: &mut PruneReport,
) -> Result<HashSet<SnapshotId>> {
    let mut seen = HashSet::new();
    for sid in ids {
        let snap = match repo.load_snapshot(&sid) {
            Ok(s) => s,
            // Forgotten since the listing: what only it used may go.
            Err(Error::Missing(_)) => continue,
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "{e}; prune stopped without changing anything (run `cairn check`)"
                )));
            }
        };
        seen.insert(sid);
        rep.snapshots += 1;
        usage.batch(|u| {
            let mut stack = Vec::new();
            if u.use_blob(&snap.tree)? {
                stack.push(snap.tree);
            }
            while let Some(t) = stack.pop() {
                let tree = repo.load_tree(&t).map_err(|e| {
                    Error::Invalid(format!(
                        "tree {} of snapshot {} cannot be read: {e}; prune stopped without \
                         changing anything (run `cairn check`)",
                        t.short(),
                        sid.short()
                    ))
                })?;
                for n in &tree.nodes {
                    for c in &n.content {
                        u.use_blob(c)?;
                    }
                    if n.kind == NodeKind::Dir
                        && let Some(sub) = n.subtree
                        && u.use_blob(&sub)?
                    {
                        stack.push(sub);
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(seen)
}

/// The fate of each pack before sessions are considered, repacking the partly used packs
/// with the most unused space first until what is left unused is within `max_unused`.
fn decide(
    packs: &[PackUse],
    unsettled: &HashSet<i64>,
    opts: &PruneOptions,
    rep: &mut PruneReport,
) -> HashMap<PackId, Fate> {
    let mut fates = HashMap::new();
    let mut partly = Vec::new();
    let mut used_total = 0u64;
    for p in packs {
        let fate = match p.group {
            // Taken back into use, but not with damage in it.
            Some(_) if p.used_blobs > 0 && opts.repack.contains(&p.id) => Fate::Repack,
            Some(_) if p.used_blobs > 0 => Fate::Unmark,
            Some(g) if unsettled.contains(&g) => Fate::Mark,
            Some(g) => Fate::Wait(g),
            None if p.used_blobs == 0 => Fate::Mark,
            None if opts.repack.contains(&p.id) => Fate::Repack,
            None if p.used_blobs == p.blobs => Fate::Keep,
            None => {
                partly.push(p);
                Fate::Keep
            }
        };
        if p.group.is_none() {
            rep.packs_before += 1;
            rep.bytes_before += p.size;
            rep.unused_bytes_before += p.blob_bytes.saturating_sub(p.used_bytes);
        }
        if matches!(fate, Fate::Keep | Fate::Unmark | Fate::Repack) {
            used_total += p.used_bytes;
        }
        fates.insert(p.id, fate);
    }
    let unused_of = |p: &PackUse| p.blob_bytes.saturating_sub(p.used_bytes);
    let mut unused: u64 = partly.iter().map(|p| unused_of(p)).sum();
    let allowed = match opts.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Bytes(b) => b,
        // unused / (used + unused) ≤ pct, as restic counts it.
        MaxUnused::Percent(pct) => (used_total as f64 * pct / (100.0 - pct)) as u64,
    };
    partly.sort_by(|a, b| {
        let ra = unused_of(a) as f64 / a.size.max(1) as f64;
        let rb = unused_of(b) as f64 / b.size.max(1) as f64;
        rb.total_cmp(&ra).then(a.id.cmp(&b.id))
    });
    let mut budget = opts.max_repack.unwrap_or(u64::MAX);
    for p in partly {
        if unused <= allowed {
            break;
        }
        if p.size > budget {
            continue;
        }
        budget -= p.size;
        unused -= unused_of(p);
        fates.insert(p.id, Fate::Repack);
    }
    fates
}

/// Counts the fates into the report.
fn tally(packs: &[PackUse], fates: &HashMap<PackId, Fate>, rep: &mut PruneReport) {
    for p in packs {
        match fates[&p.id] {
            Fate::Keep => rep.packs_after += 1,
            Fate::Unmark => {
                rep.packs_unmarked += 1;
                rep.packs_after += 1;
            }
            Fate::Repack => {
                rep.packs_waiting += 1;
                rep.bytes_waiting += p.size;
            }
            Fate::Mark | Fate::Wait(_) => {
                rep.packs_waiting += 1;
                rep.bytes_waiting += p.size;
            }
            Fate::Delete => {
                rep.packs_deleted += 1;
                rep.bytes_freed += p.size;
            }
        }
        if p.group.is_none() && p.used_blobs == 0 {
            rep.packs_marked += 1;
        }
    }
}

/// Copies the used blobs of the packs to repack into new packs (indexed by the saver).
/// Each blob is authenticated before it is copied, so damage is never propagated; its
/// sealed bytes are copied as they are.
fn repack(
    repo: &Repository,
    usage: &Usage,
    packs: &[PackUse],
    fates: &HashMap<PackId, Fate>,
    rep: &mut PruneReport,
) -> Result<u64> {
    let chosen: Vec<&PackUse> = packs
        .iter()
        .filter(|p| fates[&p.id] == Fate::Repack)
        .collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let claims = BlobSaver::claims(repo);
    std::thread::scope(|s| -> Result<()> {
        let mut saver = BlobSaver::start(repo, &claims, s);
        for p in &chosen {
            let what = || format!("pack {}", p.id);
            // No whole-pack hash check: each blob copied is authenticated on its own, so a
            // pack damaged only where unused blobs lie (what `repair snapshots --read-data`
            // leaves) is repacked and the damage dropped with it.
            let bytes = repo.backend().get(FileKind::Pack, &p.id.to_hex())?;
            for e in usage.blobs_of(&p.id, true)? {
                let end = e.offset as usize + e.length as usize;
                let sealed = bytes.get(e.offset as usize..end).ok_or_else(|| {
                    Error::corrupt(what(), format!("blob {} lies outside the pack", e.id))
                })?;
                open_blob(repo.key(), p.blob_type, &e.id, sealed, e.raw_len as usize).map_err(
                    |why| {
                        Error::corrupt(
                            format!("blob {} in {}", e.id, what()),
                            format!(
                                "{why}; prune stopped before changing the index (run \
                                 `cairn repair snapshots --read-data` to cut it from the \
                                 snapshots that need it)"
                            ),
                        )
                    },
                )?;
                rep.bytes_repacked += e.length as u64;
                saver.add_copy(p.blob_type, e.id, sealed.to_vec(), e.raw_len as usize)?;
            }
        }
        saver.finish()
    })?;
    Ok(chosen.len() as u64)
}

/// Index files of at most this many blob entries.
const BLOBS_PER_INDEX: usize = 100_000;

/// Writes the new index: packs in use, then the marked groups (carried over, and the new one
/// numbered `new_group` with no sessions yet).
fn write_index(
    repo: &Repository,
    usage: &Usage,
    packs: &[PackUse],
    fates: &HashMap<PackId, Fate>,
    groups: &[usage::Group],
    new_group: i64,
) -> Result<Vec<IndexId>> {
    let mut w = repo.index_writer(BLOBS_PER_INDEX, false);
    for p in packs {
        if matches!(fates[&p.id], Fate::Keep | Fate::Unmark) {
            let blobs = usage.blobs_of(&p.id, false)?;
            w.add(usage::index_pack(p, blobs), None)?;
        }
    }
    for g in groups {
        for p in packs.iter().filter(|p| fates[&p.id] == Fate::Wait(g.n)) {
            let blobs = usage.blobs_of(&p.id, false)?;
            w.add(
                usage::index_pack(p, blobs),
                Some((g.marked_at, &g.sessions)),
            )?;
        }
    }
    // Deleted packs stay listed as marked until the next prune: if this run is killed before
    // deleting them, nothing adopts them back into use.
    for p in packs {
        if matches!(fates[&p.id], Fate::Mark | Fate::Repack | Fate::Delete) {
            let blobs = usage.blobs_of(&p.id, false)?;
            w.add(usage::index_pack(p, blobs), Some((new_group, &[UNSETTLED])))?;
        }
    }
    Ok(w.finish()?.0)
}

/// Records the sessions found running after the index rewrite with the group marked in this
/// run: each index file written with it is replaced by one that names them.
fn rewrite_new_group(
    repo: &Repository,
    written: &[IndexId],
    sessions: &[SessionId],
    new_group: i64,
) -> Result<()> {
    for id in written {
        let mut f = match repo.load_index(id) {
            Ok(f) => f,
            // Replaced by another prune, which carried the group over as unsettled.
            Err(Error::Missing(_)) => continue,
            Err(e) => return Err(e),
        };
        let mut changed = false;
        for g in &mut f.marked {
            if g.marked_at == new_group && g.sessions == [UNSETTLED] {
                g.sessions = sessions.to_vec();
                changed = true;
            }
        }
        if changed {
            // The settled file is durable before the unsettled one goes: a crash between
            // leaves both, and a pack marked in two groups keeps the first read (either is
            // safe: the unsettled one is only ever re-marked).
            repo.save_index(&f)?;
            repo.backend().delete(FileKind::Index, &id.to_hex())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob::BlobType;

    #[test]
    fn max_unused_parses() {
        assert_eq!("5%".parse::<MaxUnused>(), Ok(MaxUnused::Percent(5.0)));
        assert_eq!("0%".parse::<MaxUnused>(), Ok(MaxUnused::Percent(0.0)));
        assert_eq!("2G".parse::<MaxUnused>(), Ok(MaxUnused::Bytes(2 << 30)));
        assert_eq!("unlimited".parse::<MaxUnused>(), Ok(MaxUnused::Unlimited));
        for bad in ["100%", "-1%", "x%", "5 parsecs", ""] {
            assert!(bad.parse::<MaxUnused>().is_err(), "{bad}");
        }
    }

    fn pack(id: u8, group: Option<i64>, blobs: u64, used: u64) -> PackUse {
        PackUse {
            id: PackId([id; 32]),
            blob_type: BlobType::Data,
            size: blobs * 100 + 50,
            group,
            blobs,
            blob_bytes: blobs * 100,
            used_blobs: used,
            used_bytes: used * 100,
        }
    }

    #[test]
    fn fates_follow_use_and_the_unused_tolerance() {
        let packs = vec![
            pack(1, None, 10, 10),  // all used
            pack(2, None, 10, 0),   // unused
            pack(3, None, 10, 9),   // 10 % unused
            pack(4, None, 10, 2),   // 80 % unused
            pack(5, Some(7), 4, 1), // marked, needed again
            pack(6, Some(7), 4, 0), // marked, still unused
            pack(8, Some(9), 4, 0), // marked by a killed prune
        ];
        let unsettled = HashSet::from([9]);
        let fates = |opts: &PruneOptions| {
            let mut rep = PruneReport::default();
            let f = decide(&packs, &unsettled, opts, &mut rep);
            (packs.iter().map(|p| f[&p.id]).collect::<Vec<_>>(), rep)
        };
        let (f, rep) = fates(&PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            ..PruneOptions::default()
        });
        use Fate::*;
        // 900 B unused of 2200 kept: the worst pack goes first, and that is enough
        // (100 B left ≤ 5 % of the data kept).
        assert_eq!(f, vec![Keep, Mark, Keep, Repack, Unmark, Wait(7), Mark]);
        assert_eq!(rep.packs_before, 4);
        assert_eq!(rep.unused_bytes_before, 1000 + 100 + 800);
        let (f, _) = fates(&PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..PruneOptions::default()
        });
        assert_eq!((f[2], f[3]), (Repack, Repack));
        let (f, _) = fates(&PruneOptions {
            max_unused: MaxUnused::Unlimited,
            ..PruneOptions::default()
        });
        assert_eq!((f[2], f[3]), (Keep, Keep));
        // A budget smaller than the worst pack skips it for the next.
        let (f, _) = fates(&PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            max_repack: Some(1000),
            ..PruneOptions::default()
        });
        assert_eq!((f[2], f[3]), (Keep, Keep));
        let (f, _) = fates(&PruneOptions {
            max_unused: MaxUnused::Bytes(0),
            max_repack: Some(1050),
            ..PruneOptions::default()
        });
        assert_eq!((f[2], f[3]), (Keep, Repack));
        // Named packs are rewritten whatever their unused share or the budget; an unused
        // one is still just marked.
        let (f, _) = fates(&PruneOptions {
            max_unused: MaxUnused::Unlimited,
            max_repack: Some(0),
            repack: HashSet::from([PackId([1; 32]), PackId([3; 32]), PackId([2; 32])]),
            ..PruneOptions::default()
        });
        assert_eq!((f[0], f[1], f[2], f[3]), (Repack, Mark, Repack, Keep));
    }
}
