//! `mount`: browse every snapshot as a read-only filesystem until unmounted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use cairn::ops::vfs::fuse::{MountOptions, mount};
use cairn::ops::vfs::{Vfs, VfsOptions};

use super::{FilterArgs, Globals};

#[derive(Args)]
pub struct MountArgs {
    /// An empty directory to mount on.
    mountpoint: PathBuf,
    /// Show only this snapshot (id prefix or `latest`), its paths at the top.
    #[arg(long)]
    snapshot: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Let other users read the mount (the stored permissions still apply; as a user this
    /// needs `user_allow_other` in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// Memory for opened file data, e.g. 512M.
    #[arg(long, value_parser = super::parse_size, default_value = "64M")]
    cache_size: u64,
}

pub fn run(g: &Globals, a: MountArgs) -> Result<i32> {
    // The cheap refusals come before the password is asked for.
    if a.snapshot.is_some() && !a.filter.is_empty() {
        anyhow::bail!(
            "--snapshot shows one snapshot: it cannot be combined with --tag, --host or --path"
        );
    }
    cairn::ops::vfs::fuse::check_mountpoint(&a.mountpoint)?;
    let repo = Arc::new(g.open()?);
    let snapshot = match &a.snapshot {
        Some(s) => Some(repo.resolve_snapshot(s)?.0),
        None => None,
    };
    let opts = VfsOptions {
        snapshot,
        filter: a.filter.filter(),
        blob_cache_bytes: a.cache_size,
        ..VfsOptions::default()
    };
    let session = repo.begin_reader_session("mount");
    let vfs = Vfs::new(repo.clone(), opts, |line| eprintln!("cairn mount: {line}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first one's unmount is under way ends the process.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .context("cannot handle signals")?;
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    let mounted = mount(
        vfs,
        &a.mountpoint,
        &MountOptions {
            allow_other: a.allow_other,
            threads: 4,
        },
    )?;
    g.say(format!(
        "mounted at {}; unmount with Ctrl-C or `umount {}`",
        a.mountpoint.display(),
        a.mountpoint.display()
    ));
    while mounted.is_serving() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    mounted
        .unmount()
        .with_context(|| format!("cannot unmount {}", a.mountpoint.display()))?;
    drop(session);
    g.say("unmounted");
    Ok(0)
}
