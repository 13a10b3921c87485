//! `serve`: the site's operations as an HTTP service, and its schedules.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;

use cairn::server::{ServeOptions, serve as run_server};

use super::Globals;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on [default: [server] listen, else 127.0.0.1:8010].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Do not run the config's schedules (another process runs them).
    #[arg(long)]
    no_schedules: bool,
    /// How often the schedules' limits are judged and alerts sent.
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    status_every: std::time::Duration,
    /// Run every schedule once at start, then follow the schedules.
    #[arg(long, conflicts_with = "no_schedules")]
    run_now: bool,
}

pub fn serve(g: &Globals, a: ServeArgs) -> Result<i32> {
    let site = g.site()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    let opts = ServeOptions {
        listen: a.listen,
        schedules: !a.no_schedules,
        stop,
        status_every: a.status_every,
        run_now: a.run_now,
    };
    let scheme = if site.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    run_server(site.clone(), &opts, |addr| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({
                "time": chrono::Utc::now(), "action": "listen", "ok": true,
                "address": format!("{scheme}://{addr}"),
                "schedules": if opts.schedules { site.config.schedules.len() } else { 0 },
            })
        );
        let _ = out.flush();
    })?;
    println!(
        "{}",
        serde_json::json!({ "time": chrono::Utc::now(), "action": "stop", "ok": true })
    );
    Ok(0)
}
