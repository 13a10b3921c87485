//! A site workspace for end-to-end tests: a repository and a `cairn.toml` naming it.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use super::Env;

/// A workspace with a repository and a config naming it; `body` is the rest of the config.
pub struct Site {
    pub env: Env,
}

impl Site {
    pub fn new(body: &str) -> Site {
        let env = Env::new();
        std::fs::write(env.path("pw"), format!("{}\n", env.password)).unwrap();
        let s = Site { env };
        s.config(body);
        s
    }

    /// Writes the config: `body`'s lines before its first table go to the top, where TOML
    /// keeps them top-level.
    pub fn config(&self, body: &str) {
        let lines: Vec<&str> = body.lines().collect();
        let split = lines
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(lines.len());
        let (top, tables) = (lines[..split].join("\n"), lines[split..].join("\n"));
        let text = format!(
            "state_dir = \"state\"\ndrill_dir = \"drills\"\n{top}\n[repository]\npath = \"repo\"\npassword_file = \"pw\"\ncache_dir = \"cache\"\n{tables}\n"
        );
        std::fs::write(self.cfg(), text).unwrap();
    }

    pub fn cfg(&self) -> PathBuf {
        self.env.path("cairn.toml")
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.env.path(rel)
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.env.cmd(&["--config", self.cfg().to_str().unwrap()]);
        c.args(args).current_dir(self.env.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cairn")
    }

    /// Runs with --json; asserts the exit code; parses stdout.
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert_eq!(
            o.status.code(),
            Some(code),
            "cairn {a:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cairn {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn versions(&self, comp: &str) -> Vec<Value> {
        self.json(&["versions", comp], 0)
            .as_array()
            .unwrap()
            .clone()
    }
}
