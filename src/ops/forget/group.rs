//! Which snapshots a policy looks at together (groups) and at all (filters).
//!
//! A policy is applied to each group on its own, so that the backups of one machine or one
//! directory never push out those of another.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::policy::TagList;
use crate::error::Error;
use crate::id::SnapshotId;
use crate::repo::snapshot::Snapshot;

/// The snapshot fields whose values must agree for two snapshots to share a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct GroupBy {
    /// Same host name.
    pub host: bool,
    /// Same set of source paths.
    pub paths: bool,
    /// Same set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default, `host,paths`: each backup set on its own.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    /// Comma-separated `host`, `paths`, `tags` (singular or plural, as restic); `""` puts
    /// every snapshot in one group.
    fn from_str(text: &str) -> Result<Self, Error> {
        let mut by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for word in text.split(',').map(str::trim) {
            match word {
                "host" | "hosts" => by.host = true,
                "path" | "paths" => by.paths = true,
                "tag" | "tags" => by.tags = true,
                "" => {}
                _ => {
                    return Err(Error::Invalid(format!(
                        "unknown grouping {word:?} in {text:?}: use host, paths and tags \
                         separated by commas, e.g. \"host,paths\", or \"\" for a single group"
                    )));
                }
            }
        }
        Ok(by)
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = [
            (self.host, "host"),
            (self.paths, "paths"),
            (self.tags, "tags"),
        ];
        let set: Vec<&str> = words
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, w)| *w)
            .collect();
        f.write_str(&set.join(","))
    }
}

/// The values a group's snapshots share; `None` for a field not grouped by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Host name.
    pub host: Option<String>,
    /// Source paths, sorted.
    pub paths: Option<Vec<String>>,
    /// Tags, sorted.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The key of `snap`'s group. Paths and tags are sorted so that their order in the
    /// snapshot record does not split a group.
    pub fn of(snap: &Snapshot, by: GroupBy) -> GroupKey {
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list
        };
        GroupKey {
            host: by.host.then(|| snap.hostname.clone()),
            paths: by.paths.then(|| sorted(&snap.paths)),
            tags: by.tags.then(|| sorted(&snap.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(host) = &self.host {
            parts.push(format!("host {host}"));
        }
        if let Some(paths) = &self.paths {
            parts.push(format!("paths [{}]", paths.join(", ")));
        }
        if let Some(tags) = &self.tags {
            parts.push(format!("tags [{}]", tags.join(", ")));
        }
        if parts.is_empty() {
            return f.write_str("all snapshots");
        }
        f.write_str(&parts.join(", "))
    }
}

/// Splits `snaps` into groups, ordered by key so that output is the same on every run.
pub fn group(
    snaps: &[(SnapshotId, Snapshot)],
    by: GroupBy,
) -> Vec<(GroupKey, Vec<(SnapshotId, Snapshot)>)> {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, snap) in snaps {
        let members = groups.entry(GroupKey::of(snap, by)).or_default();
        members.push((*id, snap.clone()));
    }
    groups.into_iter().collect()
}

/// Restricts a run to some snapshots; an empty field lets every snapshot through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any one list whose tags are all present (restic's repeated `--tag a,b`).
    pub tags: Vec<TagList>,
    /// Any one of these host names.
    pub hosts: Vec<String>,
    /// All of these paths among the snapshot's paths.
    pub paths: Vec<String>,
}

impl Filter {
    /// Whether `snap` passes every part of the filter.
    pub fn matches(&self, snap: &Snapshot) -> bool {
        let tags = self.tags.is_empty() || self.tags.iter().any(|l| l.matches(&snap.tags));
        let host = self.hosts.is_empty() || self.hosts.contains(&snap.hostname);
        let paths = self.paths.iter().all(|p| snap.paths.contains(p));
        tags && host && paths
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::snap_on;
    use super::*;

    fn sample() -> Vec<(SnapshotId, Snapshot)> {
        vec![
            snap_on("a", &["/home", "/etc"], "2025-01-01 10:00", &["x", "w"]),
            snap_on("a", &["/etc", "/home"], "2025-01-02 10:00", &["w", "x"]),
            snap_on("a", &["/home"], "2025-01-03 10:00", &[]),
            snap_on("b", &["/home"], "2025-01-04 10:00", &["x"]),
        ]
    }

    fn sizes(groups: &[(GroupKey, Vec<(SnapshotId, Snapshot)>)]) -> Vec<usize> {
        groups.iter().map(|(_, g)| g.len()).collect()
    }

    #[test]
    fn parses_grouping_words() {
        let all: GroupBy = "host, paths,tags".parse().unwrap();
        assert_eq!(all.to_string(), "host,paths,tags");
        assert_eq!("hosts,path".parse::<GroupBy>().unwrap(), GroupBy::default());
        assert_eq!("".parse::<GroupBy>().unwrap().to_string(), "");
        let err = "host,bogus".parse::<GroupBy>().unwrap_err().to_string();
        assert!(err.contains("\"bogus\""), "{err}");
    }

    #[test]
    fn groups_by_host_and_sorted_paths() {
        let groups = group(&sample(), GroupBy::default());
        assert_eq!(sizes(&groups), [2, 1, 1]);
        let key = &groups[0].0;
        assert_eq!(key.host.as_deref(), Some("a"));
        assert_eq!(key.paths, Some(vec!["/etc".into(), "/home".into()]));
        assert_eq!(key.tags, None);
        assert_eq!(key.to_string(), "host a, paths [/etc, /home]");
    }

    #[test]
    fn groups_by_tags_host_or_nothing() {
        let by_tags = group(&sample(), "tags".parse().unwrap());
        assert_eq!(sizes(&by_tags), [1, 2, 1]);
        assert_eq!(by_tags[1].0.tags, Some(vec!["w".into(), "x".into()]));
        assert_eq!(sizes(&group(&sample(), "host".parse().unwrap())), [3, 1]);
        let one = group(&sample(), "".parse().unwrap());
        assert_eq!(sizes(&one), [4]);
        assert_eq!(one[0].0, GroupKey::default());
        assert_eq!(one[0].0.to_string(), "all snapshots");
    }

    fn passing(filter: &Filter) -> Vec<usize> {
        let all = sample();
        (0..all.len())
            .filter(|i| filter.matches(&all[*i].1))
            .collect()
    }

    #[test]
    fn filters_like_restic() {
        assert_eq!(passing(&Filter::default()), [0, 1, 2, 3]);
        let hosts = Filter {
            hosts: vec!["b".into(), "c".into()],
            ..Filter::default()
        };
        assert_eq!(passing(&hosts), [3]);
        let paths = Filter {
            paths: vec!["/home".into(), "/etc".into()],
            ..Filter::default()
        };
        assert_eq!(passing(&paths), [0, 1]);
        let tags = Filter {
            tags: vec![TagList::parse("x,w"), TagList::parse("")],
            ..Filter::default()
        };
        assert_eq!(passing(&tags), [0, 1, 2]);
        let both = Filter {
            tags: vec![TagList::parse("x")],
            hosts: vec!["a".into()],
            ..Filter::default()
        };
        assert_eq!(passing(&both), [0, 1]);
    }
}
