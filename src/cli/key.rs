//! `init` and `key`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use cairn::chunker::ChunkerParams;
use cairn::crypto::keyfile::KdfParams;
use cairn::repo::config::Compression;
use cairn::repo::{InitOptions, Repository};

use super::{Globals, parse_size};

#[derive(Args)]
pub struct InitArgs {
    /// Smallest chunk (e.g. 512K).
    #[arg(long, value_parser = parse_size)]
    chunk_min: Option<u64>,
    /// Average chunk, a power of two (e.g. 1M).
    #[arg(long, value_parser = parse_size)]
    chunk_avg: Option<u64>,
    /// Largest chunk (e.g. 8M).
    #[arg(long, value_parser = parse_size)]
    chunk_max: Option<u64>,
    /// off, auto (zstd 3, skipping what does not compress) or a zstd level 1-22.
    #[arg(long, default_value = "auto", value_parser = Compression::parse)]
    compression: Compression,
    /// Target pack size (default 16M in a folder, 32M on a rest: or s3: server).
    #[arg(long, value_parser = parse_size)]
    pack_size: Option<u64>,
    /// Print a commented site config (cairn.toml) instead, and create nothing.
    #[arg(long)]
    config_template: bool,
    #[command(flatten)]
    kdf: KdfArgs,
}

/// Argon2id cost, for keys written by this command (low values only make sense in tests).
#[derive(Args)]
pub struct KdfArgs {
    /// Argon2id memory in KiB.
    #[arg(long, hide = true)]
    kdf_memory: Option<u32>,
    /// Argon2id passes.
    #[arg(long, hide = true)]
    kdf_iterations: Option<u32>,
}

impl KdfArgs {
    fn params(&self) -> KdfParams {
        let d = KdfParams::default();
        KdfParams {
            memory_kib: self.kdf_memory.unwrap_or(d.memory_kib),
            iterations: self.kdf_iterations.unwrap_or(d.iterations),
            parallelism: 1,
        }
    }
}

pub fn init_options(a: &InitArgs, root: &std::path::Path) -> Result<InitOptions> {
    let d = ChunkerParams::default();
    let to32 = |v: Option<u64>, def: u32| -> Result<u32> {
        Ok(v.map(u32::try_from).transpose()?.unwrap_or(def))
    };
    let chunker = ChunkerParams {
        min_size: to32(a.chunk_min, d.min_size)?,
        avg_size: to32(a.chunk_avg, d.avg_size)?,
        max_size: to32(a.chunk_max, d.max_size)?,
    };
    if let Err(e) = chunker.validate() {
        bail!("invalid chunk sizes: {e}");
    }
    Ok(InitOptions {
        chunker,
        compression: a.compression,
        kdf: a.kdf.params(),
        pack_size: to32(a.pack_size, cairn::repo::default_pack_size(root))?,
    })
}

pub fn init(g: &Globals, a: InitArgs) -> Result<i32> {
    if a.config_template {
        print!("{}", cairn::site::config::TEMPLATE);
        return Ok(0);
    }
    let (path, _) = g.repo_path();
    let opts = init_options(&a, &path)?;
    let password = new_password(g)?;
    let repo = Repository::init(&path, &password, &opts, &g.cache_dir())?;
    if g.json {
        g.print_json(&serde_json::json!({"repository": path, "id": repo.config().id}))?;
    } else {
        g.say(format!(
            "created repository {} at {}",
            &repo.config().id[..8],
            path.display()
        ));
        g.say("keep the password safe: without it the data cannot be recovered");
    }
    Ok(0)
}

/// The password for a new repository: the usual sources, or a prompt asked twice.
pub(super) fn new_password(g: &Globals) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = std::env::var_os("CAIRN_NEW_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        return Ok(Zeroizing::new(p.as_bytes().to_vec()));
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin())
        && g.password_file.is_none()
        && std::env::var_os("CAIRN_PASSWORD").is_none()
        && std::env::var_os("CAIRN_PASSWORD_COMMAND").is_none()
    {
        let a = rpassword::prompt_password("new password: ")?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        if a.is_empty() {
            bail!("an empty password is not allowed");
        }
        return Ok(Zeroizing::new(a.into_bytes()));
    }
    g.password()
}

#[derive(Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// List keys.
    List,
    /// Add a key (a new password for the same repository; from CAIRN_NEW_PASSWORD or a prompt).
    Add {
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a key by id prefix.
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password of the key in use (new password from CAIRN_NEW_PASSWORD or a prompt).
    Passwd {
        #[command(flatten)]
        kdf: KdfArgs,
    },
}

fn new_key_password() -> Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = std::env::var_os("CAIRN_NEW_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        return Ok(Zeroizing::new(p.as_bytes().to_vec()));
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let a = rpassword::prompt_password("new password: ")?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b || a.is_empty() {
            bail!("the passwords differ or are empty");
        }
        return Ok(Zeroizing::new(a.into_bytes()));
    }
    bail!("no new password: set CAIRN_NEW_PASSWORD (no terminal to prompt on)")
}

pub fn run(g: &Globals, a: KeyArgs) -> Result<i32> {
    let mut repo = g.open()?;
    match a.cmd {
        KeyCmd::List => {
            let keys = repo.keys()?;
            if g.json {
                g.print_json(&keys)?;
            } else {
                println!(
                    "{:<3}{:<10} {:<22} {:<12} host",
                    "", "id", "created", "user"
                );
                for k in keys {
                    if let Some(why) = &k.damaged {
                        println!("{:<3}{:<10} damaged: {why}", "", k.id.short());
                        continue;
                    }
                    println!(
                        "{:<3}{:<10} {:<22} {:<12} {}",
                        if k.current { "*" } else { "" },
                        k.id.short(),
                        k.created,
                        k.user,
                        k.host
                    );
                }
            }
        }
        KeyCmd::Add { kdf } => {
            let id = repo.add_key(&new_key_password()?, kdf.params())?;
            report(g, "added key", &id.to_hex())?;
        }
        KeyCmd::Remove { id } => {
            let id = repo.remove_key(&id)?;
            report(g, "removed key", &id.to_hex())?;
        }
        KeyCmd::Passwd { kdf } => {
            let id = repo.change_password(&new_key_password()?, kdf.params())?;
            report(g, "password changed; new key", &id.to_hex())?;
        }
    }
    Ok(0)
}

fn report(g: &Globals, what: &str, id: &str) -> Result<()> {
    if g.json {
        g.print_json(&serde_json::json!({ "key": id }))
    } else {
        g.say(format!("{what} {}", &id[..8]));
        Ok(())
    }
}
