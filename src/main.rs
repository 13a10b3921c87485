//! The `cairn` binary: parse arguments, run one command, map the outcome to an exit code.

mod cli;

fn main() {
    limit_malloc_arenas();
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn: error: {}", cli::describe(&e));
            cli::exit_code(&e)
        }
    };
    std::process::exit(code);
}

/// Caps glibc's malloc arenas at one per core (at least two).
///
/// glibc gives each thread that meets a locked arena a new one, up to eight per core, and an
/// arena keeps the pages of the buffers freed into it. The snapshot pipeline hands its chunk
/// buffers from reader to hasher to sealer threads, so with the default every worker grows its
/// own arena full of freed windows: on the usr corpus the cap lowers a first snapshot's peak
/// RSS by about 7 % for under 2 % in time (docs/BENCHMARKS.md, "then peak RSS −7 %"). An
/// operator's own `MALLOC_ARENA_MAX` wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets a tunable of the allocator; it runs here before any other
    // thread exists, and a refused value (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
