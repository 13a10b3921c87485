//! `snapshots`, `ls`, `diff`, `stats`, `cat`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use cairn::id::SnapshotId;
use cairn::ops::find::{FindOptions, find as find_entries};
use cairn::ops::{browse, diff as diffop, stats as statsop};
use cairn::repo::snapshot::Snapshot;
use cairn::tree::{Node, NodeKind};

use super::{FilterArgs, Globals, human};

#[derive(Args)]
pub struct SnapshotsArgs {
    /// Only snapshots with this tag (repeatable: any of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots that include this path.
    #[arg(long)]
    path: Option<String>,
}

fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    json!({
        "id": id, "short_id": id.short(), "time": s.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "host": s.hostname, "user": s.username, "paths": s.paths, "tags": s.tags,
        "parent": s.parent, "original": s.original, "tree": s.tree, "summary": s.summary, "program_version": s.program_version,
        "files_new": s.summary.files_new, "files_changed": s.summary.files_changed,
        "files_unmodified": s.summary.files_unmodified, "dirs": s.summary.dirs,
        "bytes_read": s.summary.bytes_read, "data_added": s.summary.data_added,
        "data_added_packed": s.summary.data_added_packed, "errors": s.summary.errors,
        "total_files": s.summary.total_files, "total_bytes": s.summary.total_bytes,
    })
}

pub fn snapshots(g: &Globals, a: SnapshotsArgs) -> Result<i32> {
    let repo = g.open()?;
    let list: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| a.tags.is_empty() || s.tags.iter().any(|t| a.tags.contains(t)))
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|(_, s)| a.path.as_ref().is_none_or(|p| s.paths.contains(p)))
        .collect();
    if g.json {
        g.print_json(
            &list
                .iter()
                .map(|(id, s)| snapshot_json(id, s))
                .collect::<Vec<_>>(),
        )?;
        return Ok(0);
    }
    println!(
        "{:<9} {:<20} {:<16} {:<16} {:>10}  paths",
        "id", "time", "host", "tags", "size"
    );
    for (id, s) in &list {
        println!(
            "{:<9} {:<20} {:<16} {:<16} {:>10}  {}",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            s.tags.join(","),
            human(s.summary.total_bytes),
            s.paths.join(" ")
        );
    }
    g.say(format!("{} snapshots", list.len()));
    Ok(0)
}

#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`.
    snap: String,
    /// Directory (or file) inside the snapshot.
    path: Option<PathBuf>,
    /// List everything below the path.
    #[arg(long, short = 'R')]
    recursive: bool,
    /// Show mode, owner, size and time.
    #[arg(long, short = 'l')]
    long: bool,
}

fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `ls -l`'s line: mode, owner, group, size, mtime, path and a symlink's target.
fn long_line(p: &Path, n: &Node) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(n.mtime_ns)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S");
    let owner = n.user.clone().unwrap_or_else(|| n.uid.to_string());
    let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
    let link = if n.kind == NodeKind::Symlink {
        format!(" -> {}", String::from_utf8_lossy(&n.link_target))
    } else {
        String::new()
    };
    format!(
        "{} {:<8} {:<8} {:>12} {} {}{}",
        mode_string(n),
        owner,
        group,
        n.size,
        t,
        p.display(),
        link
    )
}

pub fn ls(g: &Globals, a: LsArgs) -> Result<i32> {
    let repo = g.open()?;
    let (_, snap) = repo.resolve_snapshot(&a.snap)?;
    let path = a.path.clone().unwrap_or_default();
    let mut items = Vec::new();
    browse::ls(&repo, &snap.tree, &path, a.recursive, &mut |p, n| {
        if g.json {
            let mut v = n.to_json();
            v["path"] = p.display().to_string().into();
            items.push(v);
        } else if a.long {
            println!("{}", long_line(p, n));
        } else {
            println!("{}", p.display());
        }
    })?;
    if g.json {
        g.print_json(&items)?;
    }
    Ok(0)
}

#[derive(Args)]
pub struct DiffArgs {
    /// Older snapshot.
    a: String,
    /// Newer snapshot.
    b: String,
}

pub fn diff(g: &Globals, a: DiffArgs) -> Result<i32> {
    let repo = g.open()?;
    let (_, sa) = repo.resolve_snapshot(&a.a)?;
    let (_, sb) = repo.resolve_snapshot(&a.b)?;
    let changes = diffop::diff(&repo, &sa.tree, &sb.tree)?;
    if g.json {
        g.print_json(&changes)?;
    } else {
        for c in &changes {
            println!("{}    {}", c.change, c.path);
        }
        let count = |s: &str| changes.iter().filter(|c| c.change == s).count();
        g.say(format!(
            "{} added, {} removed, {} modified, {} metadata only, {} type changed",
            count("+"),
            count("-"),
            count("M"),
            count("U"),
            count("T")
        ));
    }
    Ok(0)
}

#[derive(Args)]
pub struct StatsArgs {
    /// Snapshot id prefix or `latest`; without it, the whole repository.
    snap: Option<String>,
}

pub fn stats(g: &Globals, a: StatsArgs) -> Result<i32> {
    let repo = g.open()?;
    let s = match &a.snap {
        Some(r) => {
            let (_, snap) = repo.resolve_snapshot(r)?;
            statsop::stats(&repo, Some(&[snap.tree]))?
        }
        None => statsop::stats(&repo, None)?,
    };
    if g.json {
        g.print_json(&s)?;
    } else {
        println!("snapshots:          {}", s.snapshots);
        println!("files:              {}", s.files);
        println!("restore size:       {}", human(s.restore_size));
        println!(
            "unique content:     {} in {} data blobs",
            human(s.data_size),
            s.data_blobs
        );
        println!(
            "unique total:       {} with {} tree blobs",
            human(s.raw_size),
            s.tree_blobs
        );
        println!("stored:             {}", human(s.stored_size));
        println!("dedup ratio:        {:.2}x", s.dedup_ratio);
        println!("compression ratio:  {:.2}x", s.compression_ratio);
        if a.snap.is_none() {
            println!("packs:              {}", s.packs);
        }
    }
    Ok(0)
}

#[derive(Clone, Copy, ValueEnum)]
enum CatWhat {
    Config,
    Snapshot,
    Tree,
    Index,
}

#[derive(Args)]
pub struct CatArgs {
    /// What to print.
    #[arg(value_enum)]
    what: CatWhat,
    /// Snapshot id prefix / `latest`, tree (blob) id, or index id.
    id: Option<String>,
}

pub fn cat(g: &Globals, a: CatArgs) -> Result<i32> {
    let repo = g.open()?;
    let need = || {
        a.id.clone().ok_or_else(|| {
            anyhow::anyhow!(match a.what {
                CatWhat::Index => "`cat index` needs a full 64-digit index id",
                CatWhat::Tree => "`cat tree` needs a snapshot (id prefix or `latest`) or a full 64-digit tree id",
                _ => "`cat snapshot` needs a snapshot id prefix or `latest`",
            })
        })
    };
    let v = match a.what {
        CatWhat::Config => serde_json::to_value(repo.config())?,
        CatWhat::Snapshot => {
            let (id, s) = repo.resolve_snapshot(&need()?)?;
            snapshot_json(&id, &s)
        }
        CatWhat::Tree => {
            let id = need()?;
            let id = match id.parse() {
                Ok(b) => b,
                Err(_) => {
                    repo.resolve_snapshot(&id)
                        .with_context(|| format!("{id:?} is not a full 64-digit tree id either"))?
                        .1
                        .tree
                }
            };
            let t = repo.load_tree(&id)?;
            json!({ "id": id, "nodes": t.nodes.iter().map(Node::to_json).collect::<Vec<_>>() })
        }
        CatWhat::Index => {
            let Ok(id) = need()?.parse() else {
                bail!("give a full 64-digit index id")
            };
            let f = repo.load_index(&id)?;
            let packs = |packs: &[cairn::repo::index::IndexPack]| {
                packs.iter().map(|p| json!({
                    "id": p.id, "size": p.size, "type": p.blob_type.as_str(),
                    "blobs": p.blobs.iter().map(|b| json!({"id": b.id.to_hex(), "offset": b.offset, "length": b.length, "raw_length": b.raw_len})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()
            };
            json!({ "id": id, "packs": packs(&f.packs), "marked": f.marked.iter().map(|g| json!({
                "marked_at": g.marked_at,
                "sessions": g.sessions.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                "packs": packs(&g.packs),
            })).collect::<Vec<_>>() })
        }
    };
    g.print_json(&v)?;
    Ok(0)
}

#[derive(Args)]
pub struct FindArgs {
    /// Globs: `*.conf` matches a name anywhere, `/etc/*.conf` a whole path.
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Search only these snapshots (id prefix or `latest`; repeatable) [default: all].
    #[arg(long = "snapshot", short = 's', value_name = "SNAP")]
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only entries modified at or after this time (2024-01-31, "2024-01-31 12:00", RFC 3339).
    #[arg(long, short = 'O', value_parser = parse_when)]
    oldest: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries modified at or before this time.
    #[arg(long, short = 'N', value_parser = parse_when)]
    newest: Option<chrono::DateTime<chrono::Utc>>,
    /// Fold case in the patterns.
    #[arg(long, short = 'i')]
    ignore_case: bool,
}

/// A point in time on the command line: a date or date and time in local time, or RFC 3339.
fn parse_when(s: &str) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            format!("{s:?} is not a time: use 2024-01-31, \"2024-01-31 12:00\" or RFC 3339")
        })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{s:?} does not exist in the local time zone"))
}

pub fn find(g: &Globals, a: FindArgs) -> Result<i32> {
    if !a.snapshots.is_empty() && !a.filter.is_empty() {
        bail!(
            "--snapshot names the snapshots to search: it cannot be combined with --tag, --host or --path"
        );
    }
    let repo = g.open()?;
    let snaps = if a.snapshots.is_empty() {
        let filter = a.filter.filter();
        repo.snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect()
    } else {
        a.snapshots
            .iter()
            .map(|s| repo.resolve_snapshot(s))
            .collect::<cairn::Result<Vec<_>>>()?
    };
    // Times beyond what nanoseconds since 1970 can hold (before 1677, after 2262) are the
    // ends of the range.
    let ns = |t: chrono::DateTime<chrono::Utc>| {
        t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        })
    };
    let opts = FindOptions {
        patterns: a.patterns,
        ignore_case: a.ignore_case,
        oldest_ns: a.oldest.map(ns),
        newest_ns: a.newest.map(ns),
    };
    let mut out = Vec::new();
    let report = find_entries(&repo, &snaps, &opts, &mut |id, snap, found| {
        if g.json {
            let matches: Vec<_> = found
                .iter()
                .map(|f| {
                    let mut v = f.node.to_json();
                    v["path"] = f.path.display().to_string().into();
                    v
                })
                .collect();
            out.push(json!({
                "snapshot": id, "short_id": id.short(), "time": snap.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "host": snap.hostname, "hits": found.len(), "matches": matches,
            }));
        } else {
            println!(
                "Found matching entries in snapshot {} from {} ({})",
                id.short(),
                snap.time
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S"),
                snap.hostname
            );
            for f in found {
                println!("{}", long_line(&f.path, &f.node));
            }
            println!();
        }
        Ok(())
    })?;
    if g.json {
        g.print_json(&out)?;
    } else {
        g.say(format!(
            "{} matches in {} of {} snapshots",
            report.matches, report.snapshots_matching, report.snapshots_searched
        ));
    }
    Ok(0)
}
