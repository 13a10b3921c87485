//! The commands, over an open repository. Nothing here prints: each returns a report that the
//! CLI renders as text or JSON.

pub mod archive;
pub mod browse;
pub mod check;
pub mod copy;
pub mod diff;
pub mod find;
pub mod forget;
pub mod pattern;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshot;
pub mod stats;
pub mod tag;
pub mod vfs;
pub mod walk;

/// Reads a size like `512K`, `1M`, `1MiB`, `2G` or `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512K, 1M)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?} has an unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Reads `90s`, `15m`, `2h` or `7d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30m, 2h, 7d)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?} needs a unit: s, m, h or d (e.g. 2h)")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(secs)))
}
