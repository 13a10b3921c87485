//! What a retention policy says, and the TOML file that gives one policy per kind of snapshot.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::duration::KeepDuration;
use super::group::GroupBy;
use crate::error::{Error, Result};

/// Tags that must all be present; restic's `--keep-tag a,b` and `--tag a,b`.
///
/// The empty tag matches a snapshot with no tags at all, so `--keep-tag ''` selects the
/// untagged snapshots, as in restic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// Splits `a, b` at commas, trimming each tag (restic keeps empty pieces too).
    pub fn parse(text: &str) -> Self {
        TagList(text.split(',').map(|t| t.trim().to_string()).collect())
    }

    /// Whether a snapshot with `tags` carries every tag of the list.
    pub fn matches(&self, tags: &[String]) -> bool {
        for tag in &self.0 {
            if tag.is_empty() && tags.is_empty() {
                return true;
            }
            if !tags.contains(tag) {
                return false;
            }
        }
        true
    }
}

impl fmt::Display for TagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

impl<'de> Deserialize<'de> for TagList {
    /// `"a,b"` as on the command line, or `["a", "b"]`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            List(Vec<String>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Text(text) => TagList::parse(&text),
            Form::List(tags) => TagList(tags),
        })
    }
}

/// restic's `forget` policy. Counts of 0 (or absent) and zero spans are "not set"; a count of
/// -1 keeps every bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Keep the newest n snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the newest n hours that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<i64>,
    /// The same per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<i64>,
    /// The same per ISO week (Monday to Sunday).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<i64>,
    /// The same per month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<i64>,
    /// The same per year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<i64>,
    /// Keep every snapshot newer than this span before the newest snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<KeepDuration>,
    /// Keep the newest snapshot of every hour within this span of the newest snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<KeepDuration>,
    /// The same per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<KeepDuration>,
    /// The same per ISO week.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<KeepDuration>,
    /// The same per month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<KeepDuration>,
    /// The same per year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<KeepDuration>,
    /// Keep every snapshot that carries all tags of any one of these lists.
    #[serde(skip_serializing_if = "Vec::is_empty", alias = "keep-tag")]
    pub keep_tags: Vec<TagList>,
}

impl Policy {
    /// The counted rules with their option names, in the order restic evaluates them.
    pub(super) fn counts(&self) -> [(&'static str, Option<i64>); 6] {
        [
            ("keep-last", self.keep_last),
            ("keep-hourly", self.keep_hourly),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
            ("keep-yearly", self.keep_yearly),
        ]
    }

    /// The spans of the bucketed keep-within rules, hourly to yearly.
    pub(super) fn bucket_spans(&self) -> [Option<KeepDuration>; 5] {
        [
            self.keep_within_hourly,
            self.keep_within_daily,
            self.keep_within_weekly,
            self.keep_within_monthly,
            self.keep_within_yearly,
        ]
    }

    /// True when no rule is set, so applying it would keep everything: restic refuses to
    /// forget with such a policy rather than guess.
    pub fn is_empty(&self) -> bool {
        let spans = self.bucket_spans().into_iter().chain([self.keep_within]);
        self.keep_tags.is_empty()
            && self.counts().iter().all(|(_, n)| n.unwrap_or(0) == 0)
            && spans.flatten().all(|d| d.is_zero())
    }

    /// Rejects counts below -1, which restic once read as "keep none" and now forbids.
    pub fn validate(&self) -> Result<()> {
        for (name, count) in self.counts() {
            if let Some(n) = count.filter(|n| *n < -1) {
                return Err(Error::Invalid(format!(
                    "{name} = {n}: a count is a positive number, or -1 for unlimited"
                )));
            }
        }
        Ok(())
    }
}

/// One `[[policy]]` of a policy file: the rules for the snapshots of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct KindPolicy {
    /// The tag that makes a snapshot of this kind; `None` covers every snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The rules.
    #[serde(flatten)]
    pub policy: Policy,
}

impl TryFrom<toml::Table> for KindPolicy {
    type Error = String;

    /// `tag` is taken out first so that the rest goes through [`Policy`]'s own strict
    /// deserialisation: serde cannot reject unknown keys through a flattened field.
    fn try_from(mut table: toml::Table) -> std::result::Result<Self, String> {
        let tag = match table.remove("tag") {
            None => None,
            Some(toml::Value::String(tag)) => Some(tag),
            Some(other) => return Err(format!("tag = {other}: a tag is a string, e.g. \"daily\"")),
        };
        let policy = policy_from(table)?;
        policy.validate().map_err(|e| e.to_string())?;
        if policy.is_empty() {
            return Err(
                "a [[policy]] has no keep-* rule, so it would keep everything \
                        (add one, e.g. keep-within = \"7d\")"
                    .to_string(),
            );
        }
        Ok(KindPolicy { tag, policy })
    }
}

/// Reads the keys of a `[[policy]]` other than `tag`. A converted table no longer knows
/// where its values were, so on failure the keys are tried one by one to name the bad one.
fn policy_from(table: toml::Table) -> std::result::Result<Policy, String> {
    let read = |t: toml::Table| toml::Value::Table(t).try_into::<Policy>();
    read(table.clone()).map_err(|whole| {
        let alone = |(key, value): (&String, &toml::Value)| {
            let single = toml::Table::from_iter([(key.clone(), value.clone())]);
            read(single)
                .err()
                .map(|e| format!("{key}: {}", e.message()))
        };
        table
            .iter()
            .find_map(alone)
            .unwrap_or_else(|| whole.message().to_string())
    })
}

/// A policy file: how to group snapshots, and one policy per kind of snapshot.
///
/// ```toml
/// group-by = "host,paths"
/// [[policy]]
/// tag = "scheduled"
/// keep-within = "30d"
/// keep-daily = 7
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyFile {
    /// `host,paths,tags` or a subset; absent means `host,paths`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// The `[[policy]]` tables, in file order.
    #[serde(default, rename = "policy")]
    pub policies: Vec<KindPolicy>,
}

impl PolicyFile {
    /// Parses and checks a policy file, so that a typo fails before anything is decided.
    pub fn parse(text: &str) -> Result<PolicyFile> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("policy file: {e}")))?;
        if file.policies.is_empty() {
            return Err(Error::Invalid(
                "policy file: no [[policy]] table, so nothing says what to keep".into(),
            ));
        }
        file.grouping()?;
        Ok(file)
    }

    /// The grouping the file asks for, restic's default when it names none.
    pub fn grouping(&self) -> Result<GroupBy> {
        match &self.group_by {
            None => Ok(GroupBy::default()),
            Some(text) => text
                .parse()
                .map_err(|e: Error| Error::Invalid(format!("policy file: group-by: {e}"))),
        }
    }

    /// The policies in the form [`plan`](super::plan) takes.
    pub fn kinds(&self) -> Vec<(Option<String>, Policy)> {
        let pair = |k: &KindPolicy| (k.tag.clone(), k.policy.clone());
        self.policies.iter().map(pair).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn tag_lists_need_every_tag_and_empty_means_untagged() {
        let both = TagList::parse("prod, db");
        assert_eq!(both.0, tags(&["prod", "db"]));
        assert!(both.matches(&tags(&["db", "x", "prod"])));
        assert!(!both.matches(&tags(&["prod"])));
        let untagged = TagList::parse("");
        assert!(untagged.matches(&[]));
        assert!(!untagged.matches(&tags(&["prod"])));
        assert_eq!(both.to_string(), "[prod, db]");
    }

    #[test]
    fn emptiness_and_counts_follow_restic() {
        assert!(Policy::default().is_empty());
        let zeros = Policy {
            keep_daily: Some(0),
            keep_within: Some("0d".parse().unwrap()),
            ..Policy::default()
        };
        assert!(zeros.is_empty());
        let unlimited = Policy {
            keep_monthly: Some(-1),
            ..Policy::default()
        };
        assert!(!unlimited.is_empty());
        assert!(unlimited.validate().is_ok());
        let negative = Policy {
            keep_yearly: Some(-2),
            ..Policy::default()
        };
        let err = negative.validate().unwrap_err().to_string();
        assert!(err.contains("keep-yearly = -2"), "{err}");
    }

    #[test]
    fn parses_a_policy_file() {
        let file = PolicyFile::parse(
            r#"
            group-by = "host"
            [[policy]]
            tag = "pre-deploy"
            keep-within = "7d"
            [[policy]]
            tag = "scheduled"
            keep-within = "30d"
            keep-daily = 7
            keep-tags = ["keep,forever", ["gold"]]
            [[policy]]
            keep-last = 3
            "#,
        )
        .unwrap();
        assert_eq!(file.grouping().unwrap(), "host".parse().unwrap());
        let kinds = file.kinds();
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds[0].0.as_deref(), Some("pre-deploy"));
        assert_eq!(kinds[0].1.keep_within, Some("7d".parse().unwrap()));
        assert_eq!(kinds[1].1.keep_daily, Some(7));
        assert_eq!(
            kinds[1].1.keep_tags,
            vec![TagList::parse("keep,forever"), TagList::parse("gold")]
        );
        assert_eq!((kinds[2].0.clone(), kinds[2].1.keep_last), (None, Some(3)));
        let json = serde_json::to_value(&file.policies[1]).unwrap();
        assert_eq!(json["tag"], "scheduled");
        assert_eq!(json["keep-within"], "30d");
        let default = PolicyFile::parse("[[policy]]\nkeep-last = 1\n").unwrap();
        assert_eq!(default.grouping().unwrap(), GroupBy::default());
    }

    fn parse_err(text: &str) -> String {
        PolicyFile::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn rejects_mistakes_naming_them() {
        let typo = parse_err("[[policy]]\ntag = \"a\"\nkeep-dayly = 7\n");
        assert!(typo.starts_with("policy file: "), "{typo}");
        assert!(typo.contains("keep-dayly"), "{typo}");
        let span = parse_err("[[policy]]\nkeep-within = \"7x\"\n");
        assert!(span.contains("invalid duration \"7x\""), "{span}");
        let kind = parse_err("[[policy]]\nkeep-daily = \"7\"\n");
        assert!(kind.contains("keep-daily: invalid type"), "{kind}");
        let count = parse_err("[[policy]]\nkeep-daily = -3\n");
        assert!(count.contains("keep-daily = -3"), "{count}");
        let empty = parse_err("[[policy]]\ntag = \"a\"\n");
        assert!(empty.contains("no keep-* rule"), "{empty}");
        let top = parse_err("group_by = \"host\"\n[[policy]]\nkeep-last = 1\n");
        assert!(top.contains("group_by"), "{top}");
        let grouping = parse_err("group-by = \"hots\"\n[[policy]]\nkeep-last = 1\n");
        assert!(grouping.contains("\"hots\""), "{grouping}");
        let tag = parse_err("[[policy]]\ntag = 3\nkeep-last = 1\n");
        assert!(tag.contains("a tag is a string"), "{tag}");
        assert!(parse_err("").contains("no [[policy]]"));
        assert!(parse_err("[[policy]\n").starts_with("policy file: "));
    }
}
