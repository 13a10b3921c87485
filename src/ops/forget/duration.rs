//! Spans for the keep-within rules, written as restic writes them: `1y2m3d4h`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A span of calendar years, months, days and hours.
///
/// Calendar units rather than seconds, because "keep a month" means back to the same day of the
/// previous month, however long that month was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeepDuration {
    /// Years (`y`).
    pub years: u32,
    /// Months (`m`).
    pub months: u32,
    /// Days (`d`).
    pub days: u32,
    /// Hours (`h`).
    pub hours: u32,
}

impl KeepDuration {
    /// True when every unit is zero: restic treats such a span as "no rule".
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The instant this span before `t`: months (years count twelve) first, then days, then
    /// hours. A month back from the 31st lands on the last day of a shorter month, which
    /// reaches slightly further back than restic's overflowing arithmetic and so keeps more,
    /// never less. A span reaching past the earliest representable time gives that time.
    pub fn before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        u32::try_from(months)
            .ok()
            .and_then(|m| t.checked_sub_months(Months::new(m)))
            .and_then(|t| t.checked_sub_days(Days::new(self.days.into())))
            .and_then(|t| t.checked_sub_signed(TimeDelta::try_hours(self.hours.into())?))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn unit_mut(&mut self, unit: char) -> Option<&mut u32> {
        match unit {
            'y' => Some(&mut self.years),
            'm' => Some(&mut self.months),
            'd' => Some(&mut self.days),
            'h' => Some(&mut self.hours),
            _ => None,
        }
    }
}

/// The error for a span that does not parse, with the forms that do.
fn invalid(input: &str, why: impl fmt::Display) -> Error {
    Error::Invalid(format!(
        "invalid duration {input:?}: {why} (write numbers with units y, m, d or h, e.g. \"7d\" or \"1y6m\")"
    ))
}

impl FromStr for KeepDuration {
    type Err = Error;

    /// Each unit at most once, in any order; months are `m` (there are no minutes).
    fn from_str(input: &str) -> Result<Self, Error> {
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(invalid(input, "it is empty"));
        }
        let mut span = KeepDuration::default();
        let mut seen = String::new();
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            let Some(unit) = tail.chars().next() else {
                return Err(invalid(input, format!("no unit after {number}")));
            };
            if number.is_empty() {
                let why = if unit == '-' {
                    "a span cannot be negative".to_string()
                } else {
                    format!("expected a number before {unit:?}")
                };
                return Err(invalid(input, why));
            }
            if seen.contains(unit) {
                return Err(invalid(input, format!("unit {unit:?} is given twice")));
            }
            let value: u32 = number
                .parse()
                .map_err(|_| invalid(input, format!("{number} is too large")))?;
            let slot = span
                .unit_mut(unit)
                .ok_or_else(|| invalid(input, format!("unknown unit {unit:?}")))?;
            *slot = value;
            seen.push(unit);
            rest = &tail[unit.len_utf8()..];
        }
        Ok(span)
    }
}

impl fmt::Display for KeepDuration {
    /// Nonzero units, largest first; a zero span shows as `0d` so it still parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0d");
        }
        let units = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        for (value, unit) in units.into_iter().filter(|(v, _)| *v != 0) {
            write!(f, "{value}{unit}")?;
        }
        Ok(())
    }
}

impl Serialize for KeepDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeepDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(y: u32, m: u32, d: u32, h: u32) -> KeepDuration {
        KeepDuration {
            years: y,
            months: m,
            days: d,
            hours: h,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
    }

    #[test]
    fn parses_any_subset_in_any_order() {
        let cases = [
            ("7d", span(0, 0, 7, 0)),
            ("1y6m", span(1, 6, 0, 0)),
            ("2y5m7d3h", span(2, 5, 7, 3)),
            ("3h2d", span(0, 0, 2, 3)),
            (" 12h ", span(0, 0, 0, 12)),
            ("0d", span(0, 0, 0, 0)),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<KeepDuration>().unwrap(), want, "{text}");
        }
        assert!("0d".parse::<KeepDuration>().unwrap().is_zero());
    }

    #[test]
    fn rejects_malformed_spans_naming_the_input() {
        for bad in [
            "",
            "  ",
            "7x",
            "d7",
            "7",
            "7d7d",
            "-1d",
            "1w",
            "5m3",
            "99999999999d",
        ] {
            let err = bad.parse::<KeepDuration>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
            assert!(err.contains("\"7d\""), "{bad}: {err}");
        }
        let err = "7x".parse::<KeepDuration>().unwrap_err().to_string();
        assert!(err.contains("unknown unit 'x'"), "{err}");
    }

    #[test]
    fn displays_in_the_parsed_form() {
        for text in ["7d", "1y6m", "2y5m7d3h", "4h", "0d"] {
            assert_eq!(text.parse::<KeepDuration>().unwrap().to_string(), text);
        }
        assert_eq!(span(0, 0, 2, 3).to_string(), "2d3h");
    }

    #[test]
    fn subtracts_on_the_calendar() {
        let t = at("2025-03-31 12:00");
        assert_eq!(span(0, 1, 0, 0).before(t), at("2025-02-28 12:00"));
        assert_eq!(
            span(1, 1, 0, 0).before(at("2025-03-29 12:00")),
            at("2024-02-29 12:00")
        );
        assert_eq!(span(0, 0, 1, 13).before(t), at("2025-03-29 23:00"));
        assert_eq!(span(0, 0, 0, 0).before(t), t);
        assert_eq!(span(u32::MAX, 0, 0, 0).before(t), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        let d: KeepDuration = serde_json::from_str("\"1y2d\"").unwrap();
        assert_eq!(d, span(1, 0, 2, 0));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1y2d\"");
        assert!(serde_json::from_str::<KeepDuration>("\"2q\"").is_err());
    }
}
