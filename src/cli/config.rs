//! `config check` and `config template`.

use anyhow::Result;
use clap::{Args, Subcommand};

use cairn::site::config::TEMPLATE;
use cairn::site::hooks::check_commands;

use super::Globals;

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Check the config file and every command and path it names.
    Check,
    /// Print a commented config that covers every key.
    Template,
}

pub fn run(g: &Globals, a: ConfigArgs) -> Result<i32> {
    match a.action {
        ConfigAction::Template => {
            print!("{TEMPLATE}");
            Ok(0)
        }
        ConfigAction::Check => {
            let site = g.site()?;
            let problems = check_commands(&site.config);
            let file = site
                .config
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            if g.json {
                g.print_json(&serde_json::json!({ "file": file, "ok": problems.is_empty(), "problems": problems }))?;
            } else {
                for p in &problems {
                    let at = if p.line > 0 {
                        format!("line {}: ", p.line)
                    } else {
                        String::new()
                    };
                    eprintln!("cairn: {file}: {at}{}: {}", p.key, p.problem);
                }
                if problems.is_empty() {
                    let c = &site.config;
                    g.say(format!(
                        "{file}: ok ({} components, {} profiles, {} kinds, {} schedules, {} offsites)",
                        c.components.len(),
                        c.profiles.len(),
                        c.kinds.len(),
                        c.schedules.len(),
                        c.offsites.len()
                    ));
                }
            }
            Ok(if problems.is_empty() { 0 } else { 1 })
        }
    }
}
