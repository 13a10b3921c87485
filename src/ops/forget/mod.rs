//! `forget`'s decisions: which snapshots a retention policy keeps, by restic's rules.
//!
//! Nothing here reads or removes anything: the caller passes snapshot records in and gets
//! decisions out, so a dry run and a real run decide alike.
//!
//! ```text
//! apply(policy, one group):
//!     sort newest first (ties by id); latest = newest snapshot not dated in the future
//!     ask every rule about every snapshot (one may be kept for several reasons):
//!         keep-tag lists      → it carries all tags of a list
//!         keep-within span    → newer than the span before latest
//!         keep-last/hourly/…  → it opens a bucket (itself, hour, day, ISO week, month, year)
//!                               that the rule has not kept yet, while the rule's count lasts
//!         keep-within-daily/… → the same, uncounted, among snapshots newer than span before latest
//!     a bucket rule with room left also keeps the oldest snapshot ("oldest daily snapshot"),
//!     so a short history is not cut shorter than the policy allows
//! ```
//!
//! Calendar buckets are taken in a caller-given time zone: a "day" is the user's day.

mod duration;
mod group;
mod plan;
mod policy;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::Serialize;

pub use duration::KeepDuration;
pub use group::{Filter, GroupBy, GroupKey, group};
pub use plan::{GroupPlan, Plan, plan, plan_at};
pub use policy::{KindPolicy, Policy, PolicyFile, TagList};

use crate::id::SnapshotId;
use crate::repo::snapshot::Snapshot;

/// What a policy decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Kept, or to be removed.
    pub keep: bool,
    /// Why it is kept, in restic's words (`daily snapshot`, `within 7d`); empty when removed.
    pub reasons: Vec<String>,
}

/// The calendar units of the bucket rules.
#[derive(Clone, Copy, Debug)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    const ALL: [Unit; 5] = [Unit::Hour, Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    fn adjective(self) -> &'static str {
        match self {
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }

    /// A number shared by the times of one bucket and by no other (`YYYYMMDD` for a day).
    /// Weeks are ISO weeks, numbered within their ISO year: 2024-12-30 is in week 1 of 2025.
    fn bucket<Tz: TimeZone>(self, time: DateTime<Utc>, tz: &Tz) -> i64 {
        let local = time.with_timezone(tz);
        let year = i64::from(local.year());
        let month = year * 100 + i64::from(local.month());
        let day = month * 100 + i64::from(local.day());
        match self {
            Unit::Hour => day * 100 + i64::from(local.hour()),
            Unit::Day => day,
            Unit::Week => {
                let week = local.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Unit::Month => month,
            Unit::Year => year,
        }
    }
}

/// A rule that keeps the newest snapshot of each bucket it sees: keep-last (every snapshot
/// its own bucket), a counted calendar rule, or an uncounted keep-within calendar rule.
struct BucketRule {
    /// `None` for keep-last.
    unit: Option<Unit>,
    /// Buckets still to keep; -1 for no limit.
    left: i64,
    /// Keep-within rules look only at snapshots newer than this.
    after: Option<DateTime<Utc>>,
    reason: String,
    /// The bucket this rule kept last: it moves only when the rule keeps.
    last: Option<i64>,
}

impl BucketRule {
    /// Offers the `nr`th snapshot, newest first. It is kept when it opens a bucket, or when it
    /// is the oldest of the group and the rule still has room.
    fn offer<Tz: TimeZone>(
        &mut self,
        nr: usize,
        time: DateTime<Utc>,
        oldest: bool,
        tz: &Tz,
    ) -> Option<String> {
        let has_room = self.left > 0 || self.left == -1;
        if !has_room || self.after.is_some_and(|after| time <= after) {
            return None;
        }
        let bucket = self.unit.map_or(nr as i64, |unit| unit.bucket(time, tz));
        let repeat = self.last == Some(bucket);
        if repeat && !oldest {
            return None;
        }
        self.last = Some(bucket);
        if self.left > 0 {
            self.left -= 1;
        }
        Some(match repeat {
            true => format!("oldest {}", self.reason),
            false => self.reason.clone(),
        })
    }
}

/// The policy's bucket rules in restic's order: counted (last, hourly … yearly), then
/// keep-within by unit. Counts of 0 and zero spans are not rules.
fn bucket_rules(policy: &Policy, latest: DateTime<Utc>) -> Vec<BucketRule> {
    let units = [None].into_iter().chain(Unit::ALL.map(Some));
    let counted = units.zip(policy.counts()).filter_map(|(unit, (_, count))| {
        let left = count.unwrap_or(0);
        let reason = unit.map_or("last snapshot".into(), |u| {
            format!("{} snapshot", u.adjective())
        });
        let rule = BucketRule {
            unit,
            left,
            after: None,
            reason,
            last: None,
        };
        (left > 0 || left == -1).then_some(rule)
    });
    let spans = Unit::ALL.into_iter().zip(policy.bucket_spans());
    let windowed = spans.filter_map(|(unit, span)| {
        let span = span.filter(|s| !s.is_zero())?;
        Some(BucketRule {
            unit: Some(unit),
            left: -1,
            after: Some(span.before(latest)),
            reason: format!("{} within {span}", unit.adjective()),
            last: None,
        })
    });
    counted.chain(windowed).collect()
}

/// The time keep-within spans are measured back from: the newest snapshot dated before `now`, so
/// that one snapshot with a wrong clock cannot push every real one out of the window. With
/// none, the window opens at the earliest time and keeps everything, as in restic.
fn latest(order: &[&(SnapshotId, Snapshot)], now: DateTime<Utc>) -> DateTime<Utc> {
    let past = order.iter().map(|(_, s)| s.time).filter(|t| *t < now);
    past.max().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Applies `policy` to one group of snapshots, as of the current time. See [`apply_at`].
pub fn apply<Tz: TimeZone>(
    policy: &Policy,
    snaps: &[(SnapshotId, Snapshot)],
    tz: &Tz,
) -> Vec<Decision> {
    apply_at(policy, snaps, tz, Utc::now())
}

/// Applies `policy` to one group of snapshots, newest first, calendar buckets in `tz`; `now`
/// only decides which snapshots are dated in the future. An empty policy keeps everything
/// ("policy is empty"); callers that remove snapshots refuse such a policy first.
pub fn apply_at<Tz: TimeZone>(
    policy: &Policy,
    snaps: &[(SnapshotId, Snapshot)],
    tz: &Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut order: Vec<&(SnapshotId, Snapshot)> = snaps.iter().collect();
    order.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(a.0.cmp(&b.0)));
    let decide = |id: &SnapshotId, snap: &Snapshot, reasons: Vec<String>| Decision {
        id: *id,
        time: snap.time,
        keep: !reasons.is_empty(),
        reasons,
    };
    if policy.is_empty() {
        let all = order
            .iter()
            .map(|(id, s)| decide(id, s, vec!["policy is empty".into()]));
        return all.collect();
    }
    let latest = latest(&order, now);
    let within = policy.keep_within.filter(|s| !s.is_zero());
    let within = within.map(|span| (span, span.before(latest)));
    let mut rules = bucket_rules(policy, latest);
    let oldest = order.len().saturating_sub(1);
    let mut decisions = Vec::with_capacity(order.len());
    for (nr, (id, snap)) in order.iter().enumerate() {
        let tagged = policy.keep_tags.iter().filter(|l| l.matches(&snap.tags));
        let mut reasons: Vec<String> = tagged.map(|l| format!("has tags {l}")).collect();
        if let Some((span, after)) = within
            && snap.time > after
        {
            reasons.push(format!("within {span}"));
        }
        for rule in &mut rules {
            reasons.extend(rule.offer(nr, snap.time, nr == oldest, tz));
        }
        decisions.push(decide(id, snap, reasons));
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use crate::repo::snapshot::Summary;

    pub(super) const NOW: &str = "2030-01-01 00:00";

    pub(super) fn at(s: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
    }

    /// A snapshot record whose id is derived from its fields, so equal inputs give equal ids.
    pub(super) fn snap_on(
        host: &str,
        paths: &[&str],
        time: &str,
        tags: &[&str],
    ) -> (SnapshotId, Snapshot) {
        let seed = format!("{host}{paths:?}{time}{tags:?}");
        let snap = Snapshot {
            time: at(time),
            tree: BlobId([0; 32]),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            hostname: host.into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            program_version: "cairn test".into(),
            summary: Summary::default(),
            original: None,
            reason: None,
        };
        (SnapshotId(crate::id::file_hash(seed.as_bytes())), snap)
    }

    pub(super) fn snap(time: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        snap_on("h", &["/data"], time, tags)
    }

    pub(super) fn minute(d: &Decision) -> String {
        d.time.format("%Y-%m-%d %H:%M").to_string()
    }

    /// Two years with gaps: busy days, a quiet winter, an ISO week across New Year. Listed
    /// newest first; the index is what tests name.
    const HISTORY: [&str; 16] = [
        "2025-03-10 12:00", // 0  Monday, ISO week 11
        "2025-03-10 08:00", // 1
        "2025-03-09 23:30", // 2  Sunday, week 10
        "2025-03-09 22:10", // 3
        "2025-03-08 09:00", // 4
        "2025-03-03 10:00", // 5  Monday, week 10
        "2025-02-28 18:00", // 6  week 9
        "2025-02-14 07:00", // 7  week 7
        "2025-01-31 20:00", // 8  week 5
        "2025-01-01 00:30", // 9  2025 week 1
        "2024-12-30 10:00", // 10 2025 week 1 too
        "2024-12-29 10:00", // 11 2024 week 52
        "2024-11-15 12:00", // 12
        "2024-06-01 12:00", // 13
        "2023-12-31 23:00", // 14
        "2023-07-01 12:00", // 15
    ];

    fn history() -> Vec<(SnapshotId, Snapshot)> {
        // Out of order on purpose: apply sorts.
        let mut snaps: Vec<_> = HISTORY.iter().map(|t| snap(t, &[])).collect();
        snaps.rotate_left(5);
        snaps.swap(0, 9);
        snaps
    }

    fn run(policy: &Policy) -> Vec<Decision> {
        apply_at(policy, &history(), &Utc, at(NOW))
    }

    /// The HISTORY indices `policy` keeps.
    fn kept(policy: &Policy) -> Vec<usize> {
        let decisions = run(policy);
        let index = |d: &Decision| HISTORY.iter().position(|t| *t == minute(d)).unwrap();
        decisions.iter().filter(|d| d.keep).map(index).collect()
    }

    fn reasons_of(decisions: &[Decision], nr: usize) -> Vec<&str> {
        decisions[nr].reasons.iter().map(String::as_str).collect()
    }

    fn counted(field: fn(&mut Policy) -> &mut Option<i64>, n: i64) -> Policy {
        let mut policy = Policy::default();
        *field(&mut policy) = Some(n);
        policy
    }

    fn span(text: &str) -> Option<KeepDuration> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn decisions_come_newest_first_with_ties_by_id() {
        let decisions = run(&counted(|p| &mut p.keep_last, 1));
        let times: Vec<String> = decisions.iter().map(minute).collect();
        assert_eq!(times, HISTORY);
        let twins = [
            snap("2025-01-01 00:00", &["b"]),
            snap("2025-01-01 00:00", &["a"]),
        ];
        let ids: Vec<SnapshotId> = apply_at(&Policy::default(), &twins, &Utc, at(NOW))
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(
            ids,
            [twins[0].0.min(twins[1].0), twins[0].0.max(twins[1].0)]
        );
    }

    #[test]
    fn keep_last() {
        assert_eq!(kept(&counted(|p| &mut p.keep_last, 3)), [0, 1, 2]);
        assert_eq!(
            kept(&counted(|p| &mut p.keep_last, 20)),
            (0..16).collect::<Vec<_>>()
        );
        let decisions = run(&counted(|p| &mut p.keep_last, 1));
        assert_eq!(reasons_of(&decisions, 0), ["last snapshot"]);
        assert!(decisions[1].reasons.is_empty() && !decisions[1].keep);
    }

    #[test]
    fn calendar_buckets_keep_the_newest_of_each() {
        assert_eq!(kept(&counted(|p| &mut p.keep_hourly, 3)), [0, 1, 2]);
        assert_eq!(kept(&counted(|p| &mut p.keep_daily, 4)), [0, 2, 4, 5]);
        assert_eq!(kept(&counted(|p| &mut p.keep_weekly, 3)), [0, 2, 6]);
        assert_eq!(kept(&counted(|p| &mut p.keep_monthly, 4)), [0, 6, 8, 10]);
        assert_eq!(kept(&counted(|p| &mut p.keep_yearly, 2)), [0, 10]);
    }

    #[test]
    fn iso_weeks_cross_the_year_boundary() {
        let week = |t: &str| Unit::Week.bucket(at(t), &Utc);
        assert_eq!(week("2024-12-30 10:00"), 202501);
        assert_eq!(week("2025-01-05 23:59"), 202501);
        assert_eq!(week("2024-12-29 10:00"), 202452);
        assert_eq!(week("2021-01-03 12:00"), 202053);
        // 2024-12-30 shares a week with 2025-01-01 and is skipped; 2024-12-29 is not.
        let weekly = counted(|p| &mut p.keep_weekly, 7);
        assert_eq!(kept(&weekly), [0, 2, 6, 7, 8, 9, 11]);
    }

    #[test]
    fn a_rule_with_room_left_keeps_the_oldest() {
        let yearly = counted(|p| &mut p.keep_yearly, 10);
        assert_eq!(kept(&yearly), [0, 10, 14, 15]);
        let decisions = run(&yearly);
        assert_eq!(reasons_of(&decisions, 14), ["yearly snapshot"]);
        assert_eq!(reasons_of(&decisions, 15), ["oldest yearly snapshot"]);
    }

    #[test]
    fn minus_one_is_unlimited() {
        let monthly = counted(|p| &mut p.keep_monthly, -1);
        assert_eq!(kept(&monthly), [0, 6, 8, 10, 12, 13, 14, 15]);
        let daily = counted(|p| &mut p.keep_daily, -1);
        let every_day: Vec<usize> = (0..16).filter(|i| *i != 1 && *i != 3).collect();
        assert_eq!(kept(&daily), every_day);
    }

    #[test]
    fn every_rule_sees_every_snapshot_and_spends_its_own_count() {
        let policy = Policy {
            keep_daily: Some(2),
            keep_weekly: Some(2),
            keep_monthly: Some(2),
            ..Policy::default()
        };
        assert_eq!(kept(&policy), [0, 2, 6]);
        let decisions = run(&policy);
        let all = ["daily snapshot", "weekly snapshot", "monthly snapshot"];
        assert_eq!(reasons_of(&decisions, 0), all);
        assert_eq!(
            reasons_of(&decisions, 2),
            ["daily snapshot", "weekly snapshot"]
        );
        assert_eq!(reasons_of(&decisions, 6), ["monthly snapshot"]);
        let mixed = Policy {
            keep_last: Some(1),
            keep_hourly: Some(2),
            keep_within: span("1d"),
            ..Policy::default()
        };
        let decisions = run(&mixed);
        let first = ["within 1d", "last snapshot", "hourly snapshot"];
        assert_eq!(reasons_of(&decisions, 0), first);
        assert_eq!(reasons_of(&decisions, 1), ["within 1d", "hourly snapshot"]);
        assert_eq!(reasons_of(&decisions, 2), ["within 1d"]);
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_snapshot() {
        let within = |text: &str| Policy {
            keep_within: span(text),
            ..Policy::default()
        };
        // Five years after the newest snapshot, the window still ends at that snapshot.
        assert_eq!(kept(&within("2d")), [0, 1, 2, 3]);
        assert_eq!(kept(&within("1m")), [0, 1, 2, 3, 4, 5, 6, 7]);
        // The window is open: exactly 4 hours before the newest is outside.
        assert_eq!(kept(&within("4h")), [0]);
        assert_eq!(reasons_of(&run(&within("4h")), 0), ["within 4h"]);
        // A snapshot dated after `now` is kept but does not move the window.
        let mut snaps = history();
        snaps.push(snap("2031-01-01 00:00", &[]));
        let decisions = apply_at(&within("2d"), &snaps, &Utc, at(NOW));
        let kept: Vec<String> = decisions.iter().filter(|d| d.keep).map(minute).collect();
        assert_eq!(
            kept,
            [
                "2031-01-01 00:00",
                HISTORY[0],
                HISTORY[1],
                HISTORY[2],
                HISTORY[3]
            ]
        );
    }

    #[test]
    fn keep_within_daily_keeps_one_per_day_inside_the_window() {
        let policy = Policy {
            keep_within_daily: span("3d"),
            ..Policy::default()
        };
        assert_eq!(kept(&policy), [0, 2, 4]);
        assert_eq!(reasons_of(&run(&policy), 2), ["daily within 3d"]);
        // When the whole group is inside the window, its oldest snapshot is kept too.
        let pair = [snap("2025-03-10 12:00", &[]), snap("2025-03-10 08:00", &[])];
        let wide = Policy {
            keep_within_daily: span("10d"),
            ..Policy::default()
        };
        let decisions = apply_at(&wide, &pair, &Utc, at(NOW));
        assert_eq!(reasons_of(&decisions, 0), ["daily within 10d"]);
        assert_eq!(reasons_of(&decisions, 1), ["oldest daily within 10d"]);
    }

    #[test]
    fn keep_tags_are_or_of_and_lists() {
        let snaps = [
            snap("2025-01-05 00:00", &["prod", "db"]),
            snap("2025-01-04 00:00", &["prod"]),
            snap("2025-01-03 00:00", &["db"]),
            snap("2025-01-02 00:00", &[]),
            snap("2025-01-01 00:00", &["x", "db", "prod"]),
        ];
        let keep = |lists: &[&str]| {
            let policy = Policy {
                keep_tags: lists.iter().map(|l| TagList::parse(l)).collect(),
                ..Policy::default()
            };
            let decisions = apply_at(&policy, &snaps, &Utc, at(NOW));
            let days = decisions.iter().filter(|d| d.keep).map(|d| d.time.day());
            days.collect::<Vec<u32>>()
        };
        assert_eq!(keep(&["prod,db"]), [5, 1]);
        assert_eq!(keep(&["prod,db", ""]), [5, 2, 1]);
        assert_eq!(keep(&["db", "prod"]), [5, 4, 3, 1]);
        let policy = Policy {
            keep_tags: vec![TagList::parse("db"), TagList::parse("prod")],
            ..Policy::default()
        };
        let decisions = apply_at(&policy, &snaps, &Utc, at(NOW));
        assert_eq!(
            reasons_of(&decisions, 0),
            ["has tags [db]", "has tags [prod]"]
        );
    }

    #[test]
    fn an_empty_policy_keeps_everything() {
        let decisions = run(&Policy::default());
        assert!(
            decisions
                .iter()
                .all(|d| d.keep && d.reasons == ["policy is empty"])
        );
    }

    #[test]
    fn buckets_follow_the_given_time_zone() {
        let times = [
            "2025-03-09 23:30",
            "2025-03-09 13:00",
            "2025-03-09 12:00",
            "2025-03-01 10:00",
        ];
        let snaps: Vec<_> = times.iter().map(|t| snap(t, &[])).collect();
        let daily = counted(|p| &mut p.keep_daily, 2);
        let days = |decisions: Vec<Decision>| {
            let kept = decisions.into_iter().filter(|d| d.keep);
            kept.map(|d| minute(&d)).collect::<Vec<_>>()
        };
        let utc = apply_at(&daily, &snaps, &Utc, at(NOW));
        assert_eq!(days(utc), ["2025-03-09 23:30", "2025-03-01 10:00"]);
        // At +10:00 the newest is already Monday the 10th.
        let east = chrono::FixedOffset::east_opt(10 * 3600).unwrap();
        let local = apply_at(&daily, &snaps, &east, at(NOW));
        assert_eq!(days(local), ["2025-03-09 23:30", "2025-03-09 13:00"]);
    }
}
