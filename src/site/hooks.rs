//! Shell commands of a config: hooks (`before`, `after`, `on_failure`), probes, restore
//! commands; how they run and how `cairn config check` proves they can.
//!
//! Every command runs as `sh -c COMMAND`, so the config may use pipes, redirections and
//! variables, with standard input closed (or fed the stream, for a restore command) and
//! these variables set: `CAIRN_COMPONENT`, `CAIRN_OPERATION` (run, rollback, recover, drill),
//! and where they apply `CAIRN_KIND`, `CAIRN_SNAPSHOT`, `CAIRN_ERROR`, `CAIRN_DRILL_DIR`,
//! `CAIRN_RESTORED` (the restored copy a probe examines).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

use super::config::{Commands, Config, PasswordSource, Source};
use crate::error::Result;
use crate::source::command::run_to_end;

/// The variables a command sees.
#[derive(Clone, Debug, Default)]
pub struct HookEnv(pub Vec<(String, String)>);

impl HookEnv {
    /// For `operation` on `component`.
    pub fn new(component: &str, operation: &str) -> HookEnv {
        HookEnv(vec![
            ("CAIRN_COMPONENT".into(), component.into()),
            ("CAIRN_OPERATION".into(), operation.into()),
        ])
    }

    /// Adds (or replaces) `CAIRN_<key>`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> HookEnv {
        let k = format!("CAIRN_{key}");
        self.0.retain(|(n, _)| *n != k);
        self.0.push((k, value.into()));
        self
    }
}

/// `sh -c cmd` with `env` set.
pub fn shell(cmd: &str, env: &HookEnv) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    for (k, v) in &env.0 {
        c.env(k, v);
    }
    c
}

/// Runs `cmd` to its end with standard input closed; returns the end of its standard
/// output, or an error naming `label`, the exit status and the end of its standard error.
pub fn run_command(cmd: &str, label: &str, env: &HookEnv) -> Result<String> {
    let mut c = shell(cmd, env);
    c.stdin(Stdio::null());
    let out = run_to_end(&mut c, label)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// Runs the `stage` hooks (`before`, `after`, `on_failure`) in order; the first failure
/// stops them and is returned.
pub fn run_hooks(stage: &str, cmds: &Commands, env: &HookEnv) -> Result<()> {
    for cmd in &cmds.0 {
        run_command(cmd, &format!("{stage} hook `{cmd}`"), env)?;
    }
    Ok(())
}

/// A problem `cairn config check` found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The line of the table concerned.
    pub line: usize,
    /// The key, e.g. `components.db.command`.
    pub key: String,
    /// What is wrong, and the fix.
    pub problem: String,
}

/// The words a command may start with that are not programs to look for.
const SHELL_WORDS: &[&str] = &[
    "cd", "echo", "test", "[", "true", "false", ":", ".", "exit", "export", "set", "if", "for",
    "while", "until", "case", "{", "(", "!", "printf", "read", "source", "trap", "wait", "kill",
    "exec", "umask", "unset", "eval", "command", "type",
];

/// The program a shell command runs first, past variable assignments and `exec`/`env`.
fn program_of(cmd: &str) -> Option<String> {
    for word in cmd.split_whitespace() {
        let assignment = word.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if assignment || matches!(word, "exec" | "env" | "nohup" | "time") {
            continue;
        }
        let w = word.trim_matches(|c| c == '"' || c == '\'');
        if w.starts_with('(')
            || w.starts_with('{')
            || w.starts_with('$')
            || SHELL_WORDS.contains(&w)
        {
            return None;
        }
        return Some(w.to_string());
    }
    None
}

fn executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why `cmd` cannot run, if it cannot: a shell syntax error, or a first program that is not
/// on `PATH`.
pub fn command_problem(cmd: &str) -> Option<String> {
    if cmd.trim().is_empty() {
        return Some("an empty command: give the command, or remove the key".into());
    }
    match Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if !o.status.success() => {
            let why = String::from_utf8_lossy(&o.stderr).trim().to_string();
            return Some(format!("`{cmd}` is not valid shell: {why}"));
        }
        Err(e) => return Some(format!("cannot run sh to check `{cmd}`: {e}")),
        Ok(_) => {}
    }
    let prog = program_of(cmd)?;
    if prog.contains('/') {
        if executable(Path::new(&prog)) {
            return None;
        }
        return Some(format!(
            "`{prog}` (in `{cmd}`) is not an executable file: fix the path"
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(&prog))) {
        return None;
    }
    Some(format!(
        "program `{prog}` (in `{cmd}`) is not on PATH: install it, or give its full path"
    ))
}

/// Every command the config names, checked; and the source files and directories it names,
/// which must exist.
pub fn check_commands(c: &Config) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut cmd = |line: usize, key: String, text: &str| {
        if let Some(problem) = command_problem(text) {
            found.push(Problem { line, key, problem });
        }
    };
    if let PasswordSource::Command(p) = &c.repository.password {
        cmd(0, "repository.password_command".into(), p);
    }
    for o in &c.offsites {
        if let PasswordSource::Command(p) = &o.repo.password {
            cmd(0, format!("offsite.{}.password_command", o.name), p);
        }
    }
    for comp in &c.components {
        let key = |k: &str| format!("components.{}.{k}", comp.name);
        let line = comp.line;
        if let Source::Command {
            command,
            restore_command,
            ..
        } = &comp.source
        {
            cmd(line, key("command"), command);
            if let Some(r) = restore_command {
                cmd(line, key("restore_command"), r);
            }
        }
        for (stage, list) in [
            ("before", &comp.before),
            ("after", &comp.after),
            ("on_failure", &comp.on_failure),
        ] {
            for h in &list.0 {
                cmd(line, key(stage), h);
            }
        }
        if let Some(p) = &comp.probe {
            cmd(line, key("probe"), p);
        }
        if let Some(d) = &comp.drill {
            for h in d.before.0.iter().chain(&d.after.0) {
                cmd(line, key("drill"), h);
            }
            if let Some(r) = &d.restore_command {
                cmd(line, key("drill.restore_command"), r);
            }
        }
    }
    for comp in &c.components {
        let missing = |p: &Path| {
            p.symlink_metadata().is_err().then(|| Problem {
                line: comp.line,
                key: format!("components.{}.{}", comp.name, comp.source.type_name()),
                problem: format!("{} does not exist: fix the path, or create it", p.display()),
            })
        };
        match &comp.source {
            Source::Paths { paths, .. } => found.extend(paths.iter().filter_map(|p| missing(p))),
            Source::Sqlite { path } => found.extend(missing(path)),
            Source::Command { .. } => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_program_of_a_command() {
        assert_eq!(program_of("pg_dump -Fc db").as_deref(), Some("pg_dump"));
        assert_eq!(
            program_of("PGHOST=/tmp exec pg_dump db").as_deref(),
            Some("pg_dump")
        );
        assert_eq!(
            program_of("'/usr/bin/redis-cli' --rdb -").as_deref(),
            Some("/usr/bin/redis-cli")
        );
        assert_eq!(program_of("test -f x && cat x"), None);
        assert_eq!(program_of("(cd /srv && tar c .)"), None);
    }

    #[test]
    fn judges_commands() {
        assert_eq!(command_problem("sh -c true"), None);
        let missing = command_problem("pg_dupm -Fc db").unwrap();
        assert!(
            missing.contains("program `pg_dupm`") && missing.contains("not on PATH"),
            "{missing}"
        );
        let syntax = command_problem("echo 'unterminated").unwrap();
        assert!(syntax.contains("not valid shell"), "{syntax}");
        let path = command_problem("/nonexistent/bin/x").unwrap();
        assert!(path.contains("not an executable file"), "{path}");
    }

    #[test]
    fn hooks_see_their_variables_and_failures_say_why() {
        let env = HookEnv::new("db", "run").with("KIND", "manual");
        let out = run_command(
            "echo $CAIRN_COMPONENT/$CAIRN_OPERATION/$CAIRN_KIND",
            "probe",
            &env,
        )
        .unwrap();
        assert_eq!(out, "db/run/manual");
        let e = run_hooks(
            "before",
            &Commands(vec![
                "true".into(),
                "echo oops >&2; exit 3".into(),
                "touch /never".into(),
            ]),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("before hook `echo oops >&2; exit 3` failed (exit status: 3): oops"),
            "{e}"
        );
    }
}
