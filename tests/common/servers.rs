//! Private PostgreSQL and Redis servers on 127.0.0.1 for end-to-end tests of database dumps.
//!
//! Each fixture starts its own instance in a temporary directory, on a free port of its own
//! (tests run in parallel), and stops it on drop, also when the test panicked, leaving no
//! process and no file behind. The system's own services are never used or touched.
//!
//! Where a server is not installed, `start` returns `None` (and says why on stderr) so a
//! developer's machine can skip those tests; under CI (env `CI` set) it panics instead, so a
//! missing package can never turn into a silently skipped test.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections before the test fails with its log.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many fresh ports to try when another process took the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// Whether this is a CI run, where a missing server is an error rather than a skip.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports that a server cannot be started: a skip for a developer, a failure under CI.
fn unavailable<T>(why: &str) -> Option<T> {
    assert!(
        !under_ci(),
        "{why}; CI is set, so this fails instead of skipping the test"
    );
    eprintln!("{why}: test skipped");
    None
}

/// Ports handed out in this process: two fixtures never get the same one, even when the
/// kernel offers a port again after the probe socket is closed.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free TCP port on 127.0.0.1. It is only free when probed: the caller retries on a clash.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if TAKEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// `name` in a directory of `PATH`.
fn in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `s` quoted for `sh` where needed.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A temporary directory for a server. Under root it is in /tmp, as the postgres user must
/// reach it (TMPDIR may be inside root's home); a long TMPDIR is avoided too, as a Unix
/// socket path is limited to about 100 bytes.
fn server_dir(prefix: &str) -> tempfile::TempDir {
    let base = std::env::temp_dir();
    let base = if super::is_root() || base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("tempdir")
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}

/// Asserts that `o` succeeded, showing `what`, its stdout and stderr otherwise.
fn check(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A private PostgreSQL server: superuser `postgres`, no password (trust), listening on
/// 127.0.0.1 and on a Unix socket in [`Postgres::socket_dir`].
pub struct Postgres {
    dir: tempfile::TempDir,
    sock: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// Whether server commands run as the postgres user, as PostgreSQL refuses to run as root.
    as_postgres: bool,
}

impl Postgres {
    /// Starts a private server and waits until it accepts connections. `None` when
    /// PostgreSQL is not installed and `CI` is unset; panics under CI when it is missing.
    pub fn start() -> Option<Postgres> {
        let Some(bindir) = postgres_bindir() else {
            return unavailable("PostgreSQL is not installed (no initdb, pg_ctl and postgres)");
        };
        let as_postgres = super::is_root();
        let owner = if as_postgres {
            match nix::unistd::User::from_name("postgres") {
                Ok(Some(u)) => Some(u),
                _ => return unavailable("running as root and there is no postgres user"),
            }
        } else {
            None
        };
        if as_postgres && in_path("runuser").is_none() {
            return unavailable("running as root and runuser (util-linux) is missing");
        }
        let dir = server_dir("cairn-pg-");
        let pg = Postgres {
            sock: dir.path().join("sock"),
            dir,
            bindir,
            port: 0,
            as_postgres,
        };
        let sock = pg.socket_dir().to_path_buf();
        std::fs::create_dir(&sock).expect("create socket dir");
        if let Some(u) = &owner {
            for d in [pg.dir.path(), &sock] {
                nix::unistd::chown(d, Some(u.uid), Some(u.gid)).expect("chown to postgres");
            }
        }
        let o = pg
            .server_cmd("initdb")
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        check("initdb", &o);
        Some(pg.start_on_free_port())
    }

    /// Starts the initialised server, trying another port when the chosen one is taken.
    fn start_on_free_port(mut self) -> Postgres {
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port();
            // A fresh log per attempt, so a clash is recognised in this attempt's lines.
            let _ = std::fs::remove_file(self.log());
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB",
                self.port,
                sh_quote(&self.socket_dir().display().to_string())
            );
            let o = self
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log())
                .args(["-t", &READY_TIMEOUT.as_secs().to_string()])
                .args(["-o", &options, "-w", "start"])
                .output()
                .expect("run pg_ctl start");
            if o.status.success() {
                return self;
            }
            let log = read_log(&self.log());
            if !log.contains("Address already in use") {
                // Drop stops whatever may have started before the panic.
                panic!(
                    "pg_ctl start failed: {}\n{}{}\nserver log:\n{log}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        panic!("PostgreSQL found no free port in {PORT_ATTEMPTS} attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's Unix socket: the `-h` of client tools.
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The path of a PostgreSQL program of the server's version, e.g. `bin("pg_dump")`: the
    /// ones in PATH may belong to another version.
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.bindir.join(tool)
    }

    /// Connection arguments for client tools: `-h SOCKDIR -p PORT -U postgres`.
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.socket_dir().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// A client tool with its connection arguments, as a prefix for commands that config files
    /// run with `sh -c`, e.g. `/usr/lib/postgresql/15/bin/pg_dump -h /tmp/x/sock -p 5433 -U postgres`.
    pub fn shell(&self, tool: &str) -> String {
        let mut words = vec![sh_quote(&self.bin(tool).display().to_string())];
        words.extend(self.conn_args().iter().map(|a| sh_quote(a)));
        words.join(" ")
    }

    /// A client tool (run as the current user) with its connection arguments. The caller's
    /// `PG*` variables are removed so that they cannot point it elsewhere.
    pub fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin(tool));
        c.args(self.conn_args()).stdin(Stdio::null());
        without_pg_env(&mut c);
        c
    }

    /// Creates database `name`.
    pub fn createdb(&self, name: &str) {
        let o = self
            .client("createdb")
            .arg(name)
            .output()
            .expect("run createdb");
        check(&format!("createdb {name}"), &o);
    }

    /// Runs `sql` (any number of statements) in database `db` with
    /// `psql -X -q -A -t -v ON_ERROR_STOP=1` and returns the trimmed output: rows one a line,
    /// columns separated by `|`. Panics with psql's stderr when a statement fails.
    /// Row count and a checksum of the content of table `items (id, v)` in `db`: what the
    /// database tests compare before a change and after a rollback.
    pub fn items_fingerprint(&self, db: &str) -> String {
        self.psql(
            db,
            "select count(*) || ' ' || md5(string_agg(id || ':' || v, ',' order by id)) from items",
        )
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut child = self
            .client("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .expect("write SQL to psql");
        let o = child.wait_with_output().expect("wait for psql");
        check(&format!("psql -d {db} with {sql:?}"), &o);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// A server program (initdb, pg_ctl): as the postgres user under root.
    fn server_cmd(&self, tool: &str) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin(tool));
            c
        } else {
            Command::new(self.bin(tool))
        };
        // The postgres user may not be allowed into the test's working directory.
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        without_pg_env(&mut c);
        c
    }
}

impl Drop for Postgres {
    /// Stops the server at once (nothing is worth keeping) before the directory is removed.
    fn drop(&mut self) {
        if !self.data_dir().join("postmaster.pid").exists() {
            return;
        }
        let stopped = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped {
            // The first line of postmaster.pid is the postmaster's process id.
            let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok());
            eprintln!("pg_ctl stop failed; killing postmaster {pid:?}");
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Removes the caller's `PG*` variables (PGHOST, PGDATA, PGOPTIONS, ...) from `c`.
fn without_pg_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("PG")) {
            c.env_remove(k);
        }
    }
}

/// The directory of the newest installed PostgreSQL's programs: Debian's
/// /usr/lib/postgresql/VERSION/bin, else the directory of `initdb` in PATH.
fn postgres_bindir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    let version = |d: &Path| -> Vec<u32> {
        let name = d.file_name().and_then(OsStr::to_str).unwrap_or("");
        name.split('.').map(|n| n.parse().unwrap_or(0)).collect()
    };
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|v| complete(&v.join("bin")))
        .max_by_key(|v| version(v))
        .map(|v| v.join("bin"));
    newest.or_else(|| {
        let initdb = in_path("initdb")?;
        let d = initdb.parent()?.to_path_buf();
        complete(&d).then_some(d)
    })
}

/// A private Redis server on 127.0.0.1, run as a child process, without persistence: it saves
/// nothing by itself, but loads `dump.rdb` from [`Redis::dir`] when (re)started.
pub struct Redis {
    dir: tempfile::TempDir,
    data: PathBuf,
    server: PathBuf,
    cli: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts a private server and waits until it answers PING. `None` when Redis is not
    /// installed and `CI` is unset; panics under CI when it is missing.
    pub fn start() -> Option<Redis> {
        let (Some(server), Some(cli)) = (in_path("redis-server"), in_path("redis-cli")) else {
            return unavailable("Redis is not installed (no redis-server and redis-cli in PATH)");
        };
        let dir = server_dir("cairn-redis-");
        let mut r = Redis {
            data: dir.path().join("data"),
            dir,
            server,
            cli,
            port: 0,
            child: None,
        };
        std::fs::create_dir(r.dir()).expect("create redis dir");
        for _ in 0..PORT_ATTEMPTS {
            r.port = free_port();
            if r.spawn() {
                return Some(r);
            }
        }
        panic!("Redis found no free port in {PORT_ATTEMPTS} attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory: it loads `dump.rdb` from here when it starts.
    pub fn dir(&self) -> &Path {
        &self.data
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT -e ARGS` and returns its trimmed stdout. Panics
    /// when it fails, including on an error reply (that is what `-e` is for: without it
    /// redis-cli exits 0 and prints the error like a value).
    pub fn cli(&self, args: &[&str]) -> String {
        let o = Command::new(&self.cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-e"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        check(&format!("redis-cli {args:?}"), &o);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `redis-cli -h 127.0.0.1 -p PORT` as a prefix for commands that config files run with
    /// `sh -c`.
    pub fn shell_cli(&self) -> String {
        format!(
            "{} -h 127.0.0.1 -p {}",
            sh_quote(&self.cli.display().to_string()),
            self.port
        )
    }

    /// Stops the server without saving (SHUTDOWN NOSAVE, then a kill if it lingers) and waits
    /// for it to exit. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port and directory, so that a `dump.rdb` placed
    /// in [`Redis::dir`] is loaded, and waits until it answers PING. Stops it first if it
    /// is running.
    pub fn start_again(&mut self) {
        self.stop();
        // The port is free again but another process may briefly hold it: retry a while.
        for _ in 0..10 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "Redis could not get port {} back:\n{}",
            self.port,
            read_log(&self.log())
        );
    }

    /// Starts the server on `self.port` and waits until it answers PING. False when the port
    /// is taken; panics on any other failure.
    fn spawn(&mut self) -> bool {
        let log = File::create(self.log()).expect("create redis log");
        let child = Command::new(&self.server)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // `redis-cli --rdb` is served by a diskless sync (nothing written to dir()), which
            // by default waits 5 s for more replicas: do not wait.
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("run redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                let log = read_log(&self.log());
                if log.contains("Address already in use") {
                    return false;
                }
                panic!("redis-server exited with {status}:\n{log}");
            }
            if self.pong() {
                return true;
            }
            if Instant::now() > deadline {
                let log = read_log(&self.log());
                self.stop();
                panic!("redis-server not ready after {READY_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server answers PING (not LOADING or anything else).
    fn pong(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }
}

impl Drop for Redis {
    /// Stops the server, also after a panic, before the directory is removed.
    fn drop(&mut self) {
        self.stop();
    }
}
