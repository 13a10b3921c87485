//! Progress bars on the terminal: bytes, rate and ETA (when a total is known), and the count
//! of files or packs. Drawn on stderr, only when stderr is a terminal and neither `--quiet`
//! nor `--json` is given, so scripts and logs never see them.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn::ops::progress::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar fed by an operation's [`Progress`] events.
pub struct Bar {
    bar: ProgressBar,
    items: AtomicU64,
    unit: &'static str,
}

impl Bar {
    /// A bar labelled `verb` counting `unit`s (e.g. "files"), or `None` when bars are off.
    pub fn start(show: bool, verb: &'static str, unit: &'static str) -> Option<Arc<Bar>> {
        if !show || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(spinner_style());
        bar.set_prefix(verb);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(Arc::new(Bar {
            bar,
            items: AtomicU64::new(0),
            unit,
        }))
    }

    /// The sink to hand to the operation.
    pub fn sink(self: &Arc<Self>) -> ProgressSink {
        ProgressSink::new(self.clone())
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {bytes} {msg} · {bytes_per_sec} · {elapsed}")
        .expect("invariant: a valid template")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} · {bytes_per_sec} · ETA {eta}",
    )
    .expect("invariant: a valid template")
    .progress_chars("=> ")
}

impl Progress for Bar {
    fn total(&self, bytes: u64) {
        if bytes > 0 {
            self.bar.set_length(bytes);
            self.bar.set_style(bar_style());
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        self.bar.inc(bytes);
        if items > 0 {
            let n = self.items.fetch_add(items, Ordering::Relaxed) + items;
            self.bar.set_message(format!("{n} {}", self.unit));
        }
        // An estimated total (the parent snapshot's size) may be passed: grow, do not stop.
        if let Some(len) = self.bar.length()
            && self.bar.position() > len
        {
            self.bar.set_length(self.bar.position());
        }
    }
}

/// Starts a bar when output allows one; returns the sink for the operation and the bar.
pub fn bar(
    g: &super::Globals,
    verb: &'static str,
    unit: &'static str,
) -> (ProgressSink, Option<Arc<Bar>>) {
    match Bar::start(!g.quiet && !g.json, verb, unit) {
        Some(b) => (b.sink(), Some(b)),
        None => (ProgressSink::default(), None),
    }
}
