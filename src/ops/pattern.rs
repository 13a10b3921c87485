//! Glob patterns over paths, restic-style: a pattern containing `/` matches a whole path (and
//! everything below a match); one without matches a file name anywhere.

use std::ffi::OsStr;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns.
pub struct PathPatterns {
    names: GlobSet,
    paths: GlobSet,
    empty: bool,
}

impl PathPatterns {
    /// Compiles `patterns`; the error names the bad one.
    pub fn new(patterns: &[String]) -> Result<Self> {
        Self::build(patterns, true, false)
    }

    /// Compiles `patterns` for searching: a path pattern matches that path only, not what is
    /// below it, and `ignore_case` folds case.
    pub fn for_search(patterns: &[String], ignore_case: bool) -> Result<Self> {
        Self::build(patterns, false, ignore_case)
    }

    fn build(patterns: &[String], below: bool, ignore_case: bool) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let bad = |p: &str, e: globset::Error| Error::Invalid(format!("bad pattern {p:?}: {e}"));
        for p in patterns {
            if p.contains('/') {
                let base = p.trim_end_matches('/');
                paths.add(
                    GlobBuilder::new(base)
                        .literal_separator(true)
                        .case_insensitive(ignore_case)
                        .build()
                        .map_err(|e| bad(p, e))?,
                );
                if below {
                    paths.add(Glob::new(&format!("{base}/**")).map_err(|e| bad(p, e))?);
                }
            } else {
                names.add(
                    GlobBuilder::new(p)
                        .case_insensitive(ignore_case)
                        .build()
                        .map_err(|e| bad(p, e))?,
                );
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::Invalid(e.to_string()));
        Ok(PathPatterns {
            names: build(names)?,
            paths: build(paths)?,
            empty: patterns.is_empty(),
        })
    }

    /// True when no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// True when `path` (whose last component is `name`) matches a pattern.
    pub fn matches(&self, path: &Path, name: &OsStr) -> bool {
        !self.empty && (self.names.is_match(Path::new(name)) || self.paths.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let e = PathPatterns::new(&["*.tmp".into(), "/data/cache".into()]).unwrap();
        assert!(e.matches(Path::new("/x/y.tmp"), OsStr::new("y.tmp")));
        assert!(!e.matches(Path::new("/x/y.txt"), OsStr::new("y.txt")));
        assert!(e.matches(Path::new("/data/cache"), OsStr::new("cache")));
        assert!(e.matches(Path::new("/data/cache/z"), OsStr::new("z")));
        assert!(!e.matches(Path::new("/data/cached"), OsStr::new("cached")));
        assert!(
            !PathPatterns::new(&[])
                .unwrap()
                .matches(Path::new("/a"), OsStr::new("a"))
        );
        assert!(PathPatterns::new(&["[".into()]).is_err());
    }

    #[test]
    fn search_patterns_match_the_path_itself_and_fold_case() {
        let s = PathPatterns::for_search(&["/data/cache".into(), "*.LOG".into()], true).unwrap();
        assert!(s.matches(Path::new("/data/cache"), OsStr::new("cache")));
        assert!(!s.matches(Path::new("/data/cache/z"), OsStr::new("z")));
        assert!(s.matches(Path::new("/var/app.log"), OsStr::new("app.log")));
        let exact = PathPatterns::for_search(&["*.LOG".into()], false).unwrap();
        assert!(!exact.matches(Path::new("/var/app.log"), OsStr::new("app.log")));
    }
}
