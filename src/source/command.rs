//! Commands whose output is stored (`pg_dump`, `redis-cli --rdb -`) or that run around an
//! operation (hooks): spawning them, keeping the end of what they print on standard error,
//! and judging how they ended.
//!
//! Only the last few KiB of standard error are kept: enough to say why `pg_dump` failed in a
//! report or an alert, bounded however much a command prints.

use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// How much of a command's standard error is kept.
pub const TAIL_BYTES: usize = 4096;

/// Reads `r` to its end on a thread, keeping its last `limit` bytes.
pub fn tail_reader(mut r: impl Read + Send + 'static, limit: usize) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * limit {
                        tail.drain(..tail.len() - limit);
                    }
                }
            }
        }
        if tail.len() > limit {
            tail.drain(..tail.len() - limit);
        }
        tail
    })
}

/// What a pipe reader kept, waiting at most a moment once the command has ended: a child it
/// left in the background (`svc &`) may hold the pipe open for as long as it runs.
pub fn join_briefly(h: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !h.is_finished() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// The kept text, trimmed, on one line per line, or "" when there is none.
fn tail_text(tail: &[u8]) -> String {
    String::from_utf8_lossy(tail).trim().to_string()
}

/// A running command whose standard output is read by the caller.
pub struct Producer {
    child: Child,
    label: String,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Producer {
    /// Starts `cmd` with standard input closed and standard output piped; standard error is
    /// kept (`capture_stderr`) or passed through. `label` names it in errors.
    pub fn spawn(
        cmd: &mut Command,
        label: &str,
        capture_stderr: bool,
    ) -> Result<(Producer, ChildStdout)> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        cmd.stderr(if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Invalid(format!("cannot run {label}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Invalid(format!("{label}: no standard output")))?;
        let stderr = child.stderr.take().map(|e| tail_reader(e, TAIL_BYTES));
        Ok((
            Producer {
                child,
                label: label.to_string(),
                stderr,
            },
            stdout,
        ))
    }

    /// Waits for the command; an error names it, its exit status and the end of its
    /// standard error.
    pub fn wait(mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Invalid(format!("{}: {e}", self.label)))?;
        let tail = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(Error::Invalid(failure(&self.label, &status, &tail)))
    }

    /// The command's process id (its process group's, when spawned in its own group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the command (the operation reading it failed).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end, its standard input as the caller set it; returns the end of its
/// standard output, or an error naming `label`, the exit status and the end of its standard
/// error.
pub fn run_to_end(cmd: &mut Command, label: &str) -> Result<Vec<u8>> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot run {label}: {e}")))?;
    let out = child.stdout.take().map(|o| tail_reader(o, TAIL_BYTES));
    let err = child.stderr.take().map(|e| tail_reader(e, TAIL_BYTES));
    let status = child
        .wait()
        .map_err(|e| Error::Invalid(format!("{label}: {e}")))?;
    let out = out.map(join_briefly).unwrap_or_default();
    let err = err.map(join_briefly).unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(Error::Invalid(failure(label, &status, &err)))
    }
}

/// "`LABEL` failed (exit status 1): last lines of stderr".
pub fn failure(label: &str, status: &std::process::ExitStatus, stderr: &[u8]) -> String {
    let text = tail_text(stderr);
    if text.is_empty() {
        format!("{label} failed ({status})")
    } else {
        format!("{label} failed ({status}): {text}")
    }
}
