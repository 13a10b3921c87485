//! Cron schedules for the backup scheduler.
//!
//! Schedules are written in crontab syntax because users already know it.
//! The scheduler needs the next run time from it, and installing a systemd
//! timer needs the same schedule as `OnCalendar=` lines, so both live here
//! next to the parser and cannot drift apart.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike,
};

/// How far ahead `next_after` looks: enough for a leap-day schedule,
/// while an impossible one (`0 0 30 2 *`) still gives up quickly.
const SEARCH_DAYS: i64 = 5 * 366;

/// A parsed 5-field cron schedule with Vixie cron semantics.
///
/// The original text is kept so the schedule is shown to users exactly as
/// they wrote it (macros stay macros); the bit sets make matching cheap.
/// Equality includes the text, so `@daily` and `0 0 * * *` differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    text: String,
    /// Bits 0..=59.
    minutes: u64,
    /// Bits 0..=23.
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday is 0 (a 7 in the text is folded into 0).
    weekdays: u8,
    /// Vixie cron ORs the two day fields only when neither starts with `*`,
    /// so whether the text started with `*` matters, not just the set.
    days_star: bool,
    weekdays_star: bool,
}

/// Limits and names of one cron field, so every field is parsed and
/// reported by the same code.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
    /// Value of `names[0]`.
    name_base: u32,
    /// What to write instead, for error messages.
    hint: &'static str,
}

const MINUTE: Field = Field {
    name: "minute",
    lo: 0,
    hi: 59,
    names: &[],
    name_base: 0,
    hint: "0-59",
};
const HOUR: Field = Field {
    name: "hour",
    lo: 0,
    hi: 23,
    names: &[],
    name_base: 0,
    hint: "0-23",
};
const DAY: Field = Field {
    name: "day-of-month",
    lo: 1,
    hi: 31,
    names: &[],
    name_base: 0,
    hint: "1-31",
};
const MONTH: Field = Field {
    name: "month",
    lo: 1,
    hi: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    name_base: 1,
    hint: "1-12 or jan-dec",
};
/// 0-7 because Vixie cron accepts 7 for Sunday too; `*` and `a/n` therefore
/// run up to 7, which matters for steps (`1/2` is Mon, Wed, Fri, Sun).
const WEEKDAY: Field = Field {
    name: "day-of-week",
    lo: 0,
    hi: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    name_base: 0,
    hint: "0-7 (0 and 7 are Sunday) or sun-sat",
};

const FIELDS_HINT: &str = "minute hour day-of-month month day-of-week";
const MACROS_HINT: &str = "@yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly";

impl FromStr for Cron {
    type Err = String;

    /// Errors name the field and say what to write instead, because the
    /// message is shown to whoever edits the backup configuration.
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.is_empty() {
            return Err(format!(
                "empty schedule: write 5 fields ({FIELDS_HINT}) or a macro such as @daily"
            ));
        }
        let expanded = if let Some(name) = fields[0].strip_prefix('@') {
            if fields.len() > 1 {
                return Err(format!(
                    "\"{}\" takes nothing after it: remove \"{}\"",
                    fields[0],
                    fields[1..].join(" ")
                ));
            }
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                "reboot" => {
                    return Err(format!(
                        "\"{}\" runs at boot, not on a schedule: use a time such as @daily",
                        fields[0]
                    ));
                }
                _ => {
                    return Err(format!(
                        "unknown macro \"{}\": use {MACROS_HINT}",
                        fields[0]
                    ));
                }
            }
            .split_whitespace()
            .collect()
        } else {
            fields
        };
        if expanded.len() != 5 {
            let extra = if expanded.len() > 5 {
                "; seconds and year fields are not supported"
            } else {
                ""
            };
            return Err(format!(
                "{} fields given{extra}: write exactly 5 ({FIELDS_HINT})",
                expanded.len()
            ));
        }
        let mut weekdays = parse_field(expanded[4], &WEEKDAY)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Cron {
            text: text.to_string(),
            minutes: parse_field(expanded[0], &MINUTE)?,
            hours: parse_field(expanded[1], &HOUR)? as u32,
            days: parse_field(expanded[2], &DAY)? as u32,
            months: parse_field(expanded[3], &MONTH)? as u16,
            weekdays: weekdays as u8,
            days_star: expanded[2].starts_with('*'),
            weekdays_star: expanded[4].starts_with('*'),
        })
    }
}

/// Parses a comma list into a bit set (bit n set when value n matches).
fn parse_field(text: &str, f: &Field) -> Result<u64, String> {
    let mut bits = 0;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "{} \"{text}\": empty list item: remove the stray comma",
                f.name
            ));
        }
        bits |= parse_item(item, f)?;
    }
    Ok(bits)
}

/// Parses `*`, `a`, `a-b`, each optionally followed by `/step`.
fn parse_item(item: &str, f: &Field) -> Result<u64, String> {
    let err = |msg: String| format!("{} \"{item}\": {msg}", f.name);
    let (range, step) = match item.split_once('/') {
        None => (item, None),
        Some((range, step)) => {
            if range.is_empty() {
                return Err(err("missing start before \"/\": write e.g. */5".into()));
            }
            if step.is_empty() {
                return Err(err("missing step after \"/\": write e.g. */5".into()));
            }
            let span = f.hi - f.lo + 1;
            if !step.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!(
                    "step \"{step}\" is not a number: use 1-{span}"
                )));
            }
            match step.parse::<u32>() {
                Ok(0) => return Err(err("step 0 never advances: use 1 or more".into())),
                Ok(n) if n <= span => (range, Some(n)),
                _ => return Err(err(format!("step {step} is out of range 1-{span}"))),
            }
        }
    };
    let (start, end) = if range == "*" {
        (f.lo, f.hi)
    } else if let Some((a, b)) = range.split_once('-') {
        if a.is_empty() || b.is_empty() {
            return Err(err("incomplete range: write start-end, e.g. 1-5".into()));
        }
        let start = parse_value(a, item, f)?;
        let end = parse_value(b, item, f)?;
        if start > end {
            return Err(err(format!(
                "range runs backwards: write {b}-{a}, or {a}-{},{}-{b} to wrap around",
                f.hi, f.lo
            )));
        }
        (start, end)
    } else {
        let start = parse_value(range, item, f)?;
        // `a/n` means a through the end of the field, as in Vixie cron.
        (start, if step.is_some() { f.hi } else { start })
    };
    let step = step.unwrap_or(1);
    let mut bits = 0;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

/// Parses one number or name of field `f`; `item` is for the message.
fn parse_value(s: &str, item: &str, f: &Field) -> Result<u32, String> {
    let err = |msg: String| format!("{} \"{item}\": {msg}", f.name);
    let what = if s == item {
        String::new()
    } else {
        format!("{s} is ")
    };
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(v) if (f.lo..=f.hi).contains(&v) => Ok(v),
            _ => Err(err(format!("{what}out of range {}-{}", f.lo, f.hi))),
        };
    }
    if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(f.name_base + i as u32);
    }
    if s.contains(['?', '#']) || s.ends_with(['L', 'W', 'l', 'w']) {
        return Err(err(format!(
            "\"?\", \"L\", \"W\" and \"#\" are not standard cron: use {}",
            f.hint
        )));
    }
    if f.names.is_empty() {
        Err(err(format!("\"{s}\" is not a number: use {}", f.hint)))
    } else {
        Err(err(format!("unknown name \"{s}\": use {}", f.hint)))
    }
}

impl fmt::Display for Cron {
    /// Shows the schedule as the user wrote it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// First set bit at or above `from`, so a search can jump straight to the
/// next allowed value instead of trying each one.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

impl Cron {
    /// The first minute matching the schedule strictly after `t`, in `t`'s
    /// time zone, or `None` if nothing matches within about five years.
    ///
    /// The schedule is read in local wall-clock time, as cron does. Around
    /// DST changes a local time that does not exist is skipped, and a local
    /// time that occurs twice fires only the first time, so a backup never
    /// runs twice for the same wall-clock slot. For a `t` inside the second
    /// pass of a repeated hour, the rest of that hour is therefore skipped.
    pub fn next_after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = t.timezone();
        let local = t.naive_local();
        let start = local
            .date()
            .and_hms_opt(local.hour(), local.minute(), 0)?
            .checked_add_signed(TimeDelta::minutes(1))?;
        let limit = start.checked_add_signed(TimeDelta::days(SEARCH_DAYS))?;
        let mut from = start;
        loop {
            let candidate = self.next_local(from, limit)?;
            let fired = match tz.from_local_datetime(&candidate) {
                LocalResult::Single(dt) => Some(dt),
                LocalResult::Ambiguous(a, b) => Some(if a <= b { a } else { b }),
                LocalResult::None => None,
            };
            // Not after `t` happens when `t` lies in the second pass of a
            // repeated hour: the first pass already fired this slot.
            if let Some(dt) = fired
                && dt > *t
            {
                return Some(dt);
            }
            from = candidate.checked_add_signed(TimeDelta::minutes(1))?;
        }
    }

    /// The first wall-clock minute at or after `from` (and not after
    /// `limit`) that matches, skipping whole months, days and hours that
    /// cannot match.
    fn next_local(&self, from: NaiveDateTime, limit: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let mut hour = from.hour();
        let mut minute = from.minute();
        loop {
            if date > limit.date() {
                return None;
            }
            let month = date.month();
            if self.months & (1 << month) == 0 {
                let (year, month) = match next_bit(self.months.into(), month + 1) {
                    Some(m) if m <= 12 => (date.year(), m),
                    _ => (date.year() + 1, self.months.trailing_zeros()),
                };
                date = NaiveDate::from_ymd_opt(year, month, 1)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
                continue;
            }
            match next_bit(self.hours.into(), hour) {
                Some(h) if h != hour => (hour, minute) = (h, 0),
                Some(_) => {}
                None => {
                    date = date.succ_opt()?;
                    (hour, minute) = (0, 0);
                    continue;
                }
            }
            match next_bit(self.minutes, minute) {
                Some(m) if m < 60 => {
                    let found = date.and_hms_opt(hour, m, 0)?;
                    return (found <= limit).then_some(found);
                }
                _ => {
                    if hour == 23 {
                        date = date.succ_opt()?;
                        (hour, minute) = (0, 0);
                    } else {
                        (hour, minute) = (hour + 1, 0);
                    }
                }
            }
        }
    }

    /// Vixie cron's day rule: OR when both day fields are restricted,
    /// AND otherwise.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// systemd `OnCalendar=` expressions whose union fires exactly when
    /// this schedule does, for installing the schedule as a timer (one
    /// `OnCalendar=` line each).
    ///
    /// systemd ANDs the weekday with the date, so cron's OR of the two day
    /// fields becomes two expressions. No time zone is appended: a timer
    /// uses local time unless the caller adds one.
    pub fn on_calendar(&self) -> Vec<String> {
        let minute = systemd_numbers(self.minutes, 0, 59);
        let hour = systemd_numbers(self.hours.into(), 0, 23);
        let day = systemd_numbers(self.days.into(), 1, 31);
        let month = systemd_numbers(self.months.into(), 1, 12);
        let weekday = systemd_weekdays(self.weekdays);
        let time = format!("{hour}:{minute}:00");
        if !self.days_star && !self.weekdays_star {
            return match weekday {
                // One side of the OR covers every day.
                Some(_) if day == "*" => vec![format!("*-{month}-* {time}")],
                None => vec![format!("*-{month}-* {time}")],
                Some(weekday) => vec![
                    format!("*-{month}-{day} {time}"),
                    format!("{weekday} *-{month}-* {time}"),
                ],
            };
        }
        match weekday {
            Some(weekday) => vec![format!("{weekday} *-{month}-{day} {time}")],
            None => vec![format!("*-{month}-{day} {time}")],
        }
    }
}

/// A set of numbers in `lo..=hi` in systemd form: `*`, or a list of
/// values and `a..b` runs.
///
/// systemd's `a/s` repetition is not used even where it would be
/// equivalent: released versions skip the first value after a month or
/// year rollover (systemd 252 gives 05:07, not 00:07, as the first
/// `00/5:07` after 2023-12-31 23:58), so lists are the only exact form.
fn systemd_numbers(bits: u64, lo: u32, hi: u32) -> String {
    let values: Vec<u32> = (lo..=hi).filter(|v| bits & (1 << v) != 0).collect();
    if values.len() as u32 == hi - lo + 1 {
        return "*".into();
    }
    let mut list = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        match j - i {
            0 => list.push(format!("{:02}", values[i])),
            1 => list.push(format!("{:02},{:02}", values[i], values[j])),
            _ => list.push(format!("{:02}..{:02}", values[i], values[j])),
        }
        i = j + 1;
    }
    list.join(",")
}

/// systemd weekday names in its Monday-first order (its ranges cannot wrap
/// past Sunday), or `None` when every day is allowed.
fn systemd_weekdays(bits: u8) -> Option<String> {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let on: Vec<bool> = (0..7).map(|i| bits & (1 << ((i + 1) % 7)) != 0).collect();
    if on.iter().all(|&b| b) {
        return None;
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !on[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < 7 && on[j + 1] {
            j += 1;
        }
        match j - i {
            0 => parts.push(NAMES[i].to_string()),
            1 => parts.push(format!("{},{}", NAMES[i], NAMES[j])),
            _ => parts.push(format!("{}..{}", NAMES[i], NAMES[j])),
        }
        i = j + 1;
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests;
