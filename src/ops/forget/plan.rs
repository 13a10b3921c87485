//! Several kinds of snapshot, each with its own policy, over one list of snapshots.
//!
//! A kind is the snapshots carrying a tag (`pre-deploy`, `scheduled`), or every snapshot. Each
//! kind's policy runs on its own groups, so one kind's snapshots never use up another's
//! counts. A snapshot of several kinds is removed only when every policy covering it removes
//! it: a policy can add protection, never take it away. Snapshots of no kind are not touched.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::group::{Filter, GroupBy, GroupKey, group};
use super::policy::{Policy, TagList};
use super::{Decision, apply_at};
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::repo::snapshot::Snapshot;

/// One group's decisions under one kind's policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// The tag that selects the kind; `None` for a policy over every snapshot.
    pub kind: Option<String>,
    /// Newest first. Final: a snapshot another policy keeps is kept here too, with that
    /// policy's reasons added.
    pub decisions: Vec<Decision>,
}

/// Everything a forget run would do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Per kind, per group, in policy order then group order.
    pub groups: Vec<GroupPlan>,
    /// The snapshots to remove, newest first, each once.
    pub remove: Vec<SnapshotId>,
}

/// Plans a forget run as of the current time. See [`plan_at`].
pub fn plan<Tz: TimeZone>(
    snaps: &[(SnapshotId, Snapshot)],
    policies: &[(Option<String>, Policy)],
    filter: &Filter,
    by: GroupBy,
    tz: &Tz,
) -> Result<Plan> {
    plan_at(snaps, policies, filter, by, tz, Utc::now())
}

/// Plans a forget run: the snapshots `filter` lets through are split by kind, each kind into
/// groups by `by`, each group decided by its kind's policy, and the verdicts merged.
///
/// Fails on an empty list of policies, an empty or invalid policy, and (as restic does) a
/// policy that would leave a group with no snapshot at all.
pub fn plan_at<Tz: TimeZone>(
    snaps: &[(SnapshotId, Snapshot)],
    policies: &[(Option<String>, Policy)],
    filter: &Filter,
    by: GroupBy,
    tz: &Tz,
    now: DateTime<Utc>,
) -> Result<Plan> {
    check(policies)?;
    let chosen: Vec<_> = snaps.iter().filter(|(_, s)| filter.matches(s)).collect();
    let mut groups = Vec::new();
    for (kind, policy) in policies {
        let of_kind = chosen
            .iter()
            .filter(|(_, s)| is_of_kind(kind.as_deref(), s));
        let covered: Vec<_> = of_kind.map(|pair| (*pair).clone()).collect();
        for (key, members) in group(&covered, by) {
            let decisions = apply_at(policy, &members, tz, now);
            let kind = kind.clone();
            groups.push(GroupPlan {
                key,
                kind,
                decisions,
            });
        }
    }
    merge(&mut groups);
    refuse_emptied_groups(&groups)?;
    let remove = removals(&groups);
    Ok(Plan { groups, remove })
}

/// Whether `snap` belongs to the kind named by `tag`. The empty tag is the untagged
/// snapshots, as `--tag ''` is in restic.
fn is_of_kind(tag: Option<&str>, snap: &Snapshot) -> bool {
    tag.is_none_or(|tag| TagList(vec![tag.to_string()]).matches(&snap.tags))
}

/// restic will not forget without a policy: with none, nothing says what to keep.
fn check(policies: &[(Option<String>, Policy)]) -> Result<()> {
    let none = |scope: String| {
        Error::Invalid(format!(
            "no policy given{scope}: nothing says which snapshots to keep, so none can be \
             removed (use --keep-* options or a policy file)"
        ))
    };
    if policies.is_empty() {
        return Err(none(String::new()));
    }
    for (kind, policy) in policies {
        policy.validate()?;
        if policy.is_empty() {
            let scope = kind
                .as_ref()
                .map(|t| format!(" for snapshots tagged {t:?}"));
            return Err(none(scope.unwrap_or_default()));
        }
    }
    Ok(())
}

/// How a kind's policy is named in reasons and messages.
fn label(kind: &Option<String>) -> String {
    match kind {
        Some(tag) => format!("policy {tag:?}"),
        None => "policy for all snapshots".into(),
    }
}

/// The union rule: each decision takes the verdict of every policy covering its snapshot,
/// and cites what the other policies kept it for.
fn merge(groups: &mut [GroupPlan]) {
    let mut reasons: HashMap<SnapshotId, Vec<(usize, String)>> = HashMap::new();
    for (nr, plan) in groups.iter().enumerate() {
        let label = label(&plan.kind);
        for decision in &plan.decisions {
            let cited = decision
                .reasons
                .iter()
                .map(|r| (nr, format!("{r} ({label})")));
            reasons.entry(decision.id).or_default().extend(cited);
        }
    }
    for (nr, plan) in groups.iter_mut().enumerate() {
        for decision in &mut plan.decisions {
            let all = reasons.get(&decision.id).into_iter().flatten();
            let others = all.filter(|(from, _)| *from != nr).map(|(_, r)| r.clone());
            decision.reasons.extend(others);
            decision.keep = !decision.reasons.is_empty();
        }
    }
}

/// restic refuses to remove every snapshot of a group: a keep-tag that matches nothing would
/// otherwise wipe a backup set. Checked after the union rule, so a group whose snapshots
/// another policy keeps is not refused.
fn refuse_emptied_groups(groups: &[GroupPlan]) -> Result<()> {
    let emptied = groups.iter().find(|g| g.decisions.iter().all(|d| !d.keep));
    match emptied {
        Some(g) => Err(Error::Invalid(format!(
            "refusing to remove every snapshot of group {} ({}): its rules keep none of them",
            g.key,
            label(&g.kind)
        ))),
        None => Ok(()),
    }
}

/// The removed snapshots, newest first, each once however many groups list it.
fn removals(groups: &[GroupPlan]) -> Vec<SnapshotId> {
    let decisions = groups.iter().flat_map(|g| &g.decisions);
    let mut gone: Vec<_> = decisions
        .filter(|d| !d.keep)
        .map(|d| (d.time, d.id))
        .collect();
    gone.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    gone.dedup();
    gone.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::super::PolicyFile;
    use super::super::tests::{NOW, at, minute, snap, snap_on};
    use super::*;

    const KINDS: &str = r#"
        [[policy]]
        tag = "pre-deploy"
        keep-within = "7d"
        [[policy]]
        tag = "scheduled"
        keep-within = "30d"
    "#;

    /// s2 and s7 are of both kinds; s6 of none; the last is on another host.
    fn fleet() -> Vec<(SnapshotId, Snapshot)> {
        vec![
            snap("2025-03-10 12:00", &["scheduled"]),
            snap("2025-03-01 12:00", &["scheduled", "pre-deploy"]),
            snap("2025-02-01 12:00", &["scheduled"]),
            snap("2025-03-09 12:00", &["pre-deploy"]),
            snap("2025-02-20 12:00", &["pre-deploy"]),
            snap("2024-01-01 12:00", &[]),
            snap("2025-01-01 12:00", &["pre-deploy", "scheduled"]),
            snap_on("other", &["/data"], "2025-01-02 12:00", &["scheduled"]),
        ]
    }

    fn run(policies: &[(Option<String>, Policy)], filter: &Filter) -> Result<Plan> {
        plan_at(
            &fleet(),
            policies,
            filter,
            GroupBy::default(),
            &Utc,
            at(NOW),
        )
    }

    fn only_host_h() -> Filter {
        Filter {
            hosts: vec!["h".into()],
            ..Filter::default()
        }
    }

    fn times(plan: &Plan) -> Vec<String> {
        let snaps = fleet();
        let time = |id: &SnapshotId| snaps.iter().find(|(i, _)| i == id).unwrap().1.time;
        let text = |id| time(id).format("%Y-%m-%d %H:%M").to_string();
        plan.remove.iter().map(text).collect()
    }

    #[test]
    fn a_snapshot_is_removed_only_if_every_covering_policy_removes_it() {
        let file = PolicyFile::parse(KINDS).unwrap();
        let plan = run(&file.kinds(), &only_host_h()).unwrap();
        // pre-deploy keeps only 03-09; scheduled keeps 03-10 and 03-01, so 03-01 stays.
        let gone = ["2025-02-20 12:00", "2025-02-01 12:00", "2025-01-01 12:00"];
        assert_eq!(times(&plan), gone);
        let kinds: Vec<_> = plan.groups.iter().map(|g| g.kind.as_deref()).collect();
        assert_eq!(kinds, [Some("pre-deploy"), Some("scheduled")]);
        let pre = &plan.groups[0].decisions;
        let listed: Vec<String> = pre.iter().map(minute).collect();
        let pre_deploy = ["2025-03-09 12:00", "2025-03-01 12:00", "2025-02-20 12:00"];
        assert_eq!(
            listed,
            [pre_deploy.as_slice(), &["2025-01-01 12:00"]].concat()
        );
        assert!(pre[1].keep);
        assert_eq!(pre[1].reasons, ["within 30d (policy \"scheduled\")"]);
        assert!(!pre[3].keep && pre[3].reasons.is_empty());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["groups"][1]["key"]["host"], "h");
        assert_eq!(json["remove"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn snapshots_of_no_kind_and_filtered_out_ones_are_untouched() {
        let file = PolicyFile::parse(KINDS).unwrap();
        let plan = run(&file.kinds(), &only_host_h()).unwrap();
        let listed = plan.groups.iter().flat_map(|g| &g.decisions);
        let listed: Vec<String> = listed.map(minute).collect();
        assert!(!listed.contains(&"2024-01-01 12:00".to_string()));
        assert!(!listed.contains(&"2025-01-02 12:00".to_string()));
        // Without the host filter the other host is its own group and keeps its snapshot.
        let plan = run(&file.kinds(), &Filter::default()).unwrap();
        let hosts: Vec<_> = plan.groups.iter().map(|g| g.key.host.as_deref()).collect();
        assert_eq!(hosts, [Some("h"), Some("h"), Some("other")]);
        assert_eq!(plan.groups[2].decisions[0].reasons, ["within 30d"]);
        assert_eq!(plan.remove.len(), 3);
    }

    #[test]
    fn a_policy_for_every_snapshot_covers_the_untagged_ones() {
        let last = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let plan = run(&[(None, last)], &only_host_h()).unwrap();
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.remove.len(), 5);
        assert!(times(&plan).contains(&"2024-01-01 12:00".to_string()));
    }

    #[test]
    fn refuses_without_a_policy() {
        let err = run(&[], &Filter::default()).unwrap_err().to_string();
        assert!(err.starts_with("no policy given:"), "{err}");
        assert!(err.contains("--keep-*"), "{err}");
        let empty = [(Some("scheduled".to_string()), Policy::default())];
        let err = run(&empty, &Filter::default()).unwrap_err().to_string();
        assert!(err.contains("tagged \"scheduled\""), "{err}");
        let negative = Policy {
            keep_daily: Some(-5),
            ..Policy::default()
        };
        assert!(run(&[(None, negative)], &Filter::default()).is_err());
    }

    #[test]
    fn refuses_to_empty_a_group_unless_another_policy_keeps_some() {
        let gold = Policy {
            keep_tags: vec![TagList::parse("gold")],
            ..Policy::default()
        };
        let alone = [(Some("scheduled".to_string()), gold.clone())];
        let err = run(&alone, &only_host_h()).unwrap_err().to_string();
        assert!(err.contains("refusing to remove every snapshot"), "{err}");
        assert!(err.contains("host h, paths [/data]"), "{err}");
        let newest = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let both = [alone[0].clone(), (None, newest)];
        let plan = run(&both, &only_host_h()).unwrap();
        assert_eq!(plan.remove.len(), 6);
        let first = &plan.groups[0].decisions[0];
        assert_eq!(first.reasons, ["last snapshot (policy for all snapshots)"]);
    }
}
