//! A repository in an S3-compatible bucket (AWS S3, Backblaze B2, Wasabi, Cloudflare R2,
//! Ceph RGW, SeaweedFS, Garage, MinIO), through object_store on a runtime of its own.
//!
//! Files keep the local layout under the bucket's prefix (`config`, `keys/ID`,
//! `packs/XX/ID`…). Every file but a session is written with `If-None-Match: *`, so no
//! repository file is ever overwritten; a store that does not know the header (501) is
//! written to plainly from then on, which content-named files make harmless. Objects larger
//! than [`MULTIPART_FROM`] go up in parts, several at once. Requests that fail transiently
//! (timeouts, resets, 5xx, 429) are retried with backoff by object_store; 4xx are never
//! retried, and every failure is reported with the bucket, the key, the status and what to
//! fix. See `docs/MAINTENANCE.md` for what the repository relies on from the store.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

use super::{Backend, FileKind, NewFile};
use crate::error::{Error, Result};

/// Objects larger than this are uploaded in parts (a pack of a repository made with a
/// `--pack-size` above the 32 MiB default, which a full pack overshoots by its last blob);
/// smaller ones in one request, which is cheaper on a bill per request.
pub const MULTIPART_FROM: usize = 64 << 20;
/// Size of one part of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART_SIZE: usize = 16 << 20;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Retries of one failing request when `CAIRN_S3_RETRIES` does not say otherwise.
const RETRIES: usize = 6;

/// Where a repository in a bucket is, parsed from `s3:…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `https://host[:port]`; `None` for AWS itself (the region names the endpoint).
    pub endpoint: Option<String>,
    /// The host as given, for messages.
    pub host: String,
    /// The bucket's name.
    pub bucket: String,
    /// Folder inside the bucket, without slashes at either end; may be empty.
    pub prefix: String,
    /// A region the host names (`s3.eu-west-1.amazonaws.com`).
    pub host_region: Option<String>,
    /// Virtual-hosted addressing (`bucket.host`) rather than path-style (`host/bucket`).
    pub virtual_hosted: bool,
}

impl S3Location {
    /// Parses what follows `s3:` in restic's forms: `https://host[:port]/bucket[/prefix]`,
    /// `http://…`, or `host[:port]/bucket[/prefix]` (HTTPS). AWS hosts are addressed
    /// virtual-hosted, others path-style; `CAIRN_S3_BUCKET_LOOKUP=dns|path` overrides.
    pub fn parse(url: &str, lookup: Option<&str>) -> Result<S3Location> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "s3:{url} is not a bucket address ({why}): use s3:https://host[:port]/bucket[/prefix] \
                 or s3:s3.amazonaws.com/bucket[/prefix]"
            ))
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((s @ ("http" | "https"), r)) => (s, r),
            Some(_) => return Err(bad("only http and https are known")),
            None => ("https", url),
        };
        let (host, path) = rest.split_once('/').ok_or_else(|| bad("no bucket"))?;
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if host.is_empty() || bucket.is_empty() {
            return Err(bad("no host or no bucket"));
        }
        let hostname = host.split(':').next().unwrap_or(host);
        let aws = hostname == "amazonaws.com" || hostname.ends_with(".amazonaws.com");
        let host_region = hostname
            .strip_prefix("s3.")
            .or_else(|| hostname.strip_prefix("s3-"))
            .and_then(|r| r.strip_suffix(".amazonaws.com"))
            .filter(|r| !r.is_empty() && *r != "dualstack")
            .map(str::to_string);
        let virtual_hosted = match lookup {
            Some("dns") => true,
            Some("path") => false,
            Some("auto") | None => aws,
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "CAIRN_S3_BUCKET_LOOKUP={other} is not known: use dns, path or auto"
                )));
            }
        };
        let endpoint = if aws && scheme == "https" && host_region.is_none() {
            None
        } else if virtual_hosted {
            Some(format!("{scheme}://{bucket}.{host}"))
        } else {
            Some(format!("{scheme}://{host}"))
        };
        Ok(S3Location {
            endpoint,
            host: host.to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            host_region,
            virtual_hosted,
        })
    }

    /// The address as messages show it.
    pub fn shown(&self) -> String {
        let mut s = format!("s3:{}/{}", self.host, self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }
}

/// Credentials and region, from the environment or the AWS shared files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
    /// The bucket's region, where one is set.
    pub region: Option<String>,
}

impl S3Credentials {
    /// As the AWS tools find them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`; else the profile `AWS_PROFILE` (or `default`) of
    /// `AWS_SHARED_CREDENTIALS_FILE` (or `~/.aws/credentials`). The region from `AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, or the profile in `AWS_CONFIG_FILE` (or `~/.aws/config`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<S3Credentials> {
        let home = env("HOME").map(PathBuf::from);
        let aws_file = |var: &str, name: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok());
        let mut region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
        if region.is_none() {
            let config = read(aws_file("AWS_CONFIG_FILE", "config")).unwrap_or_default();
            let section = if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            };
            region = ini_value(&config, &section, "region");
        }
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(S3Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()),
                region,
            });
        }
        let path = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let file = read(path.clone()).unwrap_or_default();
        let id = ini_value(&file, &profile, "aws_access_key_id");
        let secret = ini_value(&file, &profile, "aws_secret_access_key");
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(S3Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: ini_value(&file, &profile, "aws_session_token"),
                region,
            }),
            _ => Err(Error::Invalid(format!(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put \
                 the profile {profile:?} (AWS_PROFILE) in {}",
                path.map_or_else(
                    || "~/.aws/credentials".to_string(),
                    |p| p.display().to_string()
                )
            ))),
        }
    }
}

/// The value of `key` in `[section]` of an INI text (the AWS shared files' format).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// A bucket repository.
pub struct S3Backend {
    runtime: tokio::runtime::Runtime,
    store: AmazonS3,
    location: S3Location,
    region: String,
    /// Cleared when the store answered 501 to `If-None-Match`: later writes go plainly.
    conditional: AtomicBool,
    /// Objects larger than this go up in parts ([`MULTIPART_FROM`]; tests lower it).
    multipart_from: usize,
    /// Uploads in flight at once ([`Backend::uploads`]).
    connections: usize,
    /// Requests sent, for tests (a multipart upload counts its parts).
    pub requests: AtomicU64,
}

impl S3Backend {
    /// A backend for `s3:URL` (`url` is what follows `s3:`) with credentials and options
    /// from the environment. Nothing is sent yet.
    pub fn new(url: &str) -> Result<S3Backend> {
        let env = |k: &str| std::env::var(k).ok();
        let location = S3Location::parse(url, env("CAIRN_S3_BUCKET_LOOKUP").as_deref())?;
        let credentials = S3Credentials::from_env(env)?;
        let retries = match env("CAIRN_S3_RETRIES") {
            Some(n) => n.parse().map_err(|_| {
                Error::Invalid(format!("CAIRN_S3_RETRIES={n} is not a number of retries"))
            })?,
            None => RETRIES,
        };
        Self::with(location, credentials, retries)
    }

    /// A backend for a parsed location, credentials and a number of retries per request.
    pub fn with(
        location: S3Location,
        credentials: S3Credentials,
        retries: usize,
    ) -> Result<S3Backend> {
        // object_store signs with ring; reqwest's TLS wants a process-wide provider (one
        // that is already installed is as good).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let region = credentials
            .region
            .clone()
            .or_else(|| location.host_region.clone())
            .unwrap_or_else(|| "us-east-1".to_string());
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(300))
            .with_pool_idle_timeout(Duration::from_secs(60));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(8),
                base: 2.0,
            },
            max_retries: retries,
            retry_timeout: Duration::from_secs(180),
        };
        let mut b = AmazonS3Builder::new()
            .with_client_options(options)
            .with_bucket_name(&location.bucket)
            .with_region(&region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_virtual_hosted_style_request(location.virtual_hosted)
            .with_retry(retry);
        if let Some(t) = &credentials.session_token {
            b = b.with_token(t);
        }
        if let Some(e) = &location.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        let store = b.build().map_err(|e| {
            Error::Invalid(format!(
                "{}: cannot set up the S3 client: {e}",
                location.shown()
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3 client")
            .enable_all()
            .build()
            .map_err(|e| Error::io(location.shown(), e))?;
        Ok(S3Backend {
            runtime,
            store,
            location,
            region,
            conditional: AtomicBool::new(true),
            multipart_from: MULTIPART_FROM,
            connections: super::connections_from_env()?,
            requests: AtomicU64::new(0),
        })
    }

    /// The address as messages show it (`s3:host/bucket/prefix`).
    pub fn shown(&self) -> String {
        self.location.shown()
    }

    /// The object key of a repository file.
    fn key(&self, kind: FileKind, name: &str) -> String {
        self.under(&kind.rel_path(name))
    }

    /// `rel` below the prefix.
    fn under(&self, rel: &str) -> String {
        if self.location.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.location.prefix)
        }
    }

    fn count(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }

    /// The error for a failed request on `key`, saying what to fix.
    fn fail(&self, doing: &str, key: &str, e: object_store::Error) -> Error {
        let text = e.to_string();
        let code = s3_code(&text);
        let status = http_status(&text);
        let bucket = &self.location.bucket;
        let at = format!("s3:{}/{bucket}/{key}", self.location.host);
        let (kind, what) = match (&e, code.as_deref()) {
            (_, Some("NoSuchBucket")) => (
                ErrorKind::NotFound,
                format!(
                    "the bucket {bucket} does not exist on {}: create it with the provider's \
                     tools (e.g. `aws s3 mb s3://{bucket}`), or correct the name",
                    self.location.host
                ),
            ),
            (object_store::Error::NotFound { .. }, _) => return Error::Missing(at),
            (_, Some("InvalidAccessKeyId")) => (
                ErrorKind::PermissionDenied,
                "the access key is not known to the store: check AWS_ACCESS_KEY_ID (or the \
                 profile's aws_access_key_id)"
                    .to_string(),
            ),
            (_, Some("SignatureDoesNotMatch")) => (
                ErrorKind::PermissionDenied,
                "the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY (or \
                 the profile's aws_secret_access_key)"
                    .to_string(),
            ),
            (
                _,
                Some(
                    "AuthorizationHeaderMalformed"
                    | "PermanentRedirect"
                    | "IllegalLocationConstraintException",
                ),
            ) => (
                ErrorKind::InvalidInput,
                format!(
                    "the bucket {bucket} is not in region {}: set AWS_REGION to the bucket's region",
                    self.region
                ),
            ),
            (_, Some("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired")) => (
                ErrorKind::PermissionDenied,
                "the session token has expired or is not valid: renew AWS_SESSION_TOKEN"
                    .to_string(),
            ),
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                _,
            ) => (
                ErrorKind::PermissionDenied,
                format!(
                    "access denied ({}): check the access key and secret key, and that the key \
                     may use the bucket {bucket}",
                    status.map_or_else(|| "403".to_string(), |s| s.to_string())
                ),
            ),
            _ => match status {
                Some(s @ (429 | 500..=599)) => (
                    ErrorKind::Other,
                    format!(
                        "the store answered {s} and went on answering so while retried; try \
                         again later"
                    ),
                ),
                Some(s) => (ErrorKind::Other, format!("the store answered {s}")),
                None => (
                    ErrorKind::Other,
                    format!(
                        "no answer from {} (is the store running and reachable?)",
                        self.location.host
                    ),
                ),
            },
        };
        // The store's own words last: they carry the request id a provider asks for.
        Error::io(
            at,
            std::io::Error::new(
                kind,
                format!("cannot {doing}: {what} [{}]", one_line(&text)),
            ),
        )
    }

    fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// Uploads an object in parts, [`PARTS_IN_FLIGHT`] at once.
    async fn put_parts(&self, path: &StorePath, data: &PutPayload) -> object_store::Result<()> {
        let upload = self.store.put_multipart(path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for piece in data.iter() {
            for part in piece.chunks(PART_SIZE) {
                w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                w.write(part);
            }
        }
        w.finish().await.map(|_| ())
    }

    fn put_mode(&self, kind: FileKind) -> PutMode {
        if kind == FileKind::Session || !self.conditional.load(Ordering::Relaxed) {
            PutMode::Overwrite
        } else {
            PutMode::Create
        }
    }

    /// Writes one object: in parts when large, else with one conditional `PUT`.
    fn put_payload(
        &self,
        kind: FileKind,
        name: &str,
        payload: PutPayload,
        len: usize,
    ) -> Result<()> {
        let key = self.key(kind, name);
        let path = StorePath::from(key.as_str());
        if len > self.multipart_from && kind == FileKind::Pack {
            // Parts cannot be conditional everywhere; a pack's name is the hash of its
            // bytes, so writing it twice writes the same bytes.
            self.count(2 + len.div_ceil(PART_SIZE) as u64);
            return self
                .block_on(self.put_parts(&path, &payload))
                .map_err(|e| self.fail("write", &key, e));
        }
        loop {
            let mode = self.put_mode(kind);
            let conditional = matches!(mode, PutMode::Create);
            self.count(1);
            let r = self.block_on(self.store.put_opts(
                &path,
                payload.clone(),
                PutOptions::from(mode),
            ));
            return match r {
                Ok(_) => Ok(()),
                // The file is there already: under a content name (or a random one this
                // writer chose), that is this write, done before (a retried request) —
                // unless it is a strict prefix of these bytes, a write cut short, which this
                // one replaces. Anything else stays as it is.
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) if conditional => match self.stat(kind, name)? {
                    Some(n) if n < len as u64 && is_prefix(&self.get(kind, name)?, &payload) => {
                        self.overwrite(&key, &path, payload)
                    }
                    _ => Ok(()),
                },
                Err(e) if conditional && http_status(&e.to_string()) == Some(501) => {
                    self.conditional.store(false, Ordering::Relaxed);
                    continue;
                }
                Err(e) => Err(self.fail("write", &key, e)),
            };
        }
    }

    fn overwrite(&self, key: &str, path: &StorePath, payload: PutPayload) -> Result<()> {
        self.count(1);
        self.block_on(
            self.store
                .put_opts(path, payload, PutOptions::from(PutMode::Overwrite)),
        )
        .map(|_| ())
        .map_err(|e| self.fail("write", key, e))
    }

    /// Tests: upload in parts from `n` bytes on.
    #[cfg(test)]
    fn multipart_from(mut self, n: usize) -> Self {
        self.multipart_from = n;
        self
    }
}

/// A file of [`S3Backend::create`]: its bytes, uploaded whole at commit.
struct S3File<'b> {
    backend: &'b S3Backend,
    kind: FileKind,
    buf: Vec<u8>,
}

impl NewFile for S3File<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// As [`Backend::put_checked`]: written, then its length confirmed by a `HEAD`.
    fn commit(self: Box<Self>, name: &str) -> Result<()> {
        let len = self.buf.len();
        let payload = PutPayload::from(self.buf);
        let b = self.backend;
        super::write_checked(b, self.kind, name, len, || {
            b.put_payload(self.kind, name, payload.clone(), len)
        })
    }
}

/// True when `head` is the start of the payload's bytes.
fn is_prefix(head: &[u8], payload: &PutPayload) -> bool {
    let mut rest = head;
    for piece in payload.iter() {
        let n = rest.len().min(piece.len());
        if rest[..n] != piece[..n] {
            return false;
        }
        rest = &rest[n..];
        if rest.is_empty() {
            return true;
        }
    }
    rest.is_empty()
}

/// The S3 error code in a message that carries the store's XML answer.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].to_string())
}

/// The HTTP status in object_store's message of a failed request.
fn http_status(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

fn one_line(text: &str) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match t.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t,
    }
}

impl Backend for S3Backend {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put_payload(kind, name, PutPayload::from(data.to_vec()), data.len())
    }

    /// A pack is gathered in memory and handed to object_store without a copy at commit
    /// (so a pack in flight costs its size once, not twice); object_store retries its
    /// requests, so the retrying decorator forwards these writes untouched.
    fn create(&self, kind: FileKind) -> Result<Box<dyn NewFile + '_>> {
        Ok(Box::new(S3File {
            backend: self,
            kind,
            buf: Vec::new(),
        }))
    }

    fn streams(&self) -> bool {
        true
    }

    fn uploads(&self) -> usize {
        self.connections
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name);
        let path = StorePath::from(key.as_str());
        self.count(1);
        self.block_on(async {
            let r = self.store.get(&path).await?;
            r.bytes().await
        })
        .map(Vec::from)
        .map_err(|e| self.fail("read", &key, e))
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(kind, name);
        let path = StorePath::from(key.as_str());
        self.count(1);
        let data = match self.block_on(self.store.get_range(&path, offset..offset + len)) {
            Ok(b) => Vec::from(b),
            Err(e) if matches!(&e, object_store::Error::NotFound { .. }) => {
                return Err(self.fail("read", &key, e));
            }
            // A range past the end (416, or object_store's own check of the answer).
            Err(e)
                if match http_status(&e.to_string()) {
                    Some(s) => s == 416,
                    None => e.to_string().contains("range"),
                } =>
            {
                return Err(Error::corrupt(
                    kind.rel_path(name),
                    format!("short read at {offset}+{len}"),
                ));
            }
            Err(e) => return Err(self.fail("read", &key, e)),
        };
        super::whole_range(kind, name, offset, len, data)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        if kind == FileKind::Config {
            return super::list_config(self);
        }
        let dir = self.under(kind.dir());
        let prefix = StorePath::from(dir.as_str());
        self.count(1);
        let listed: Vec<_> = self
            .block_on(self.store.list(Some(&prefix)).try_collect::<Vec<_>>())
            .map_err(|e| self.fail("list", &format!("{dir}/"), e))?;
        // A listing of 1000 keys is one request.
        self.count((listed.len() / 1000) as u64);
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                // Only what this layout puts there (packs one folder down).
                (m.location.as_ref() == self.key(kind, &name)).then_some((name, m.size))
            })
            .collect())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let key = self.key(kind, name);
        let path = StorePath::from(key.as_str());
        self.count(1);
        match self.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete", &key, e)),
        }
    }

    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        let key = self.key(kind, name);
        let path = StorePath::from(key.as_str());
        self.count(1);
        match self.block_on(self.store.head(&path)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("look up", &key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_style_addresses_parse() {
        let l = S3Location::parse("http://127.0.0.1:8333/bkt/some/prefix/", None).unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("bkt", "some/prefix")
        );
        assert!(!l.virtual_hosted);
        assert_eq!(l.shown(), "s3:127.0.0.1:8333/bkt/some/prefix");

        let l = S3Location::parse("s3.amazonaws.com/bkt", None).unwrap();
        assert_eq!(l.endpoint, None);
        assert!(l.virtual_hosted && l.prefix.is_empty());

        let l = S3Location::parse("https://s3.eu-west-1.amazonaws.com/bkt/p", None).unwrap();
        assert_eq!(l.host_region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            l.endpoint.as_deref(),
            Some("https://bkt.s3.eu-west-1.amazonaws.com")
        );

        let l = S3Location::parse("minio.example:9000/bkt", Some("dns")).unwrap();
        assert_eq!(
            l.endpoint.as_deref(),
            Some("https://bkt.minio.example:9000")
        );
        let l = S3Location::parse("s3.amazonaws.com/bkt", Some("path")).unwrap();
        assert!(!l.virtual_hosted);

        for bad in ["host-only", "ftp://h/b", "https:///b", "h/"] {
            assert!(S3Location::parse(bad, None).is_err(), "{bad}");
        }
        assert!(S3Location::parse("h/b", Some("sideways")).is_err());
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[work]\n\
             # a comment\naws_access_key_id=W\naws_secret_access_key=WS\naws_session_token=T\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[profile work]\nregion = eu-central-1\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap().to_string();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            let home = home.clone();
            move |k: &str| {
                if k == "HOME" {
                    return Some(home.clone());
                }
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = S3Credentials::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "E"),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]))
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("E", "ES")
        );
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        let c = S3Credentials::from_env(env(&[])).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.region), ("D", None));
        let c = S3Credentials::from_env(env(&[("AWS_PROFILE", "work")])).unwrap();
        assert_eq!(c.access_key_id, "W");
        assert_eq!(c.session_token.as_deref(), Some("T"));
        assert_eq!(c.region.as_deref(), Some("eu-central-1"));
        let e = S3Credentials::from_env(env(&[("AWS_PROFILE", "none")])).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
    }

    #[test]
    fn store_answers_are_read_for_code_and_status() {
        let t = "Generic S3 error: Error performing PUT http://h/b/k in 1ms - Server returned \
                 non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>";
        assert_eq!(http_status(t), Some(503));
        assert_eq!(s3_code(t).as_deref(), Some("SlowDown"));
        assert_eq!(http_status("no status here"), None);
    }
}

#[cfg(test)]
mod against_seaweed {
    use super::*;
    use crate::backend::seaweed::{self, ACCESS_KEY, SECRET_KEY};

    fn credentials(secret: &str) -> S3Credentials {
        S3Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: secret.into(),
            session_token: None,
            region: None,
        }
    }

    fn backend_at(url: &str, secret: &str, retries: usize) -> S3Backend {
        let l = S3Location::parse(url.strip_prefix("s3:").unwrap(), None).unwrap();
        S3Backend::with(l, credentials(secret), retries).unwrap()
    }

    #[test]
    fn conformance_against_seaweedfs() {
        let Some(s) = seaweed::shared() else { return };
        let bucket = s.bucket();
        let b = backend_at(&s.url(&bucket, "repo/one"), SECRET_KEY, 2);
        crate::backend::conformance(&b);
        assert!(b.requests.load(Ordering::Relaxed) > 10);
        // A second repository under another prefix of the same bucket sees none of it.
        let other = backend_at(&s.url(&bucket, "repo"), SECRET_KEY, 2);
        assert!(other.list(FileKind::Pack).unwrap().is_empty());
        assert_eq!(other.stat(FileKind::Config, "config").unwrap(), None);
    }

    #[test]
    fn no_file_is_overwritten_but_sessions_and_large_packs_go_up_in_parts() {
        let Some(s) = seaweed::shared() else { return };
        let bucket = s.bucket();
        let b = backend_at(&s.url(&bucket, "r"), SECRET_KEY, 2).multipart_from(6 << 20);
        b.put(FileKind::Index, "i1", b"first").unwrap();
        // A second write under the name is taken as done: the first stays.
        b.put(FileKind::Index, "i1", b"second").unwrap();
        assert_eq!(b.get(FileKind::Index, "i1").unwrap(), b"first");
        // But a write cut short (a prefix of the bytes) is replaced by the whole.
        b.put(FileKind::Index, "i1", b"first and more").unwrap();
        assert_eq!(b.get(FileKind::Index, "i1").unwrap(), b"first and more");
        b.put(FileKind::Session, "s1", b"one").unwrap();
        b.put(FileKind::Session, "s1", b"two").unwrap();
        assert_eq!(b.get(FileKind::Session, "s1").unwrap(), b"two");
        // 40 MiB in three parts, read back whole and by range.
        let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
        let name = "ef".repeat(32);
        let before = b.requests.load(Ordering::Relaxed);
        b.put_checked(FileKind::Pack, &name, &big).unwrap();
        assert!(b.requests.load(Ordering::Relaxed) - before >= 4);
        assert_eq!(
            b.stat(FileKind::Pack, &name).unwrap(),
            Some(big.len() as u64)
        );
        assert!(b.get(FileKind::Pack, &name).unwrap() == big);
        let at = (17 << 20) - 3;
        assert_eq!(
            b.get_range(FileKind::Pack, &name, at, 10).unwrap(),
            &big[at as usize..at as usize + 10]
        );
    }

    #[test]
    fn retries_ride_out_injected_faults_on_seaweedfs() {
        let Some(s) = seaweed::shared() else { return };
        let bucket = s.bucket();
        crate::backend::rides_out_faults(backend_at(&s.url(&bucket, "r"), SECRET_KEY, 2));
    }

    #[test]
    fn bad_credentials_and_unknown_buckets_say_what_to_fix() {
        let Some(s) = seaweed::shared() else { return };
        let bucket = s.bucket();
        let b = backend_at(&s.url(&bucket, "r"), "wrong-secret", 2);
        let e = b.get(FileKind::Config, "config").unwrap_err().to_string();
        assert!(
            e.contains("AWS_SECRET_ACCESS_KEY") && e.contains(&bucket),
            "{e}"
        );
        let e = b.put(FileKind::Key, "k", b"x").unwrap_err().to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        assert!(!e.contains("wrong-secret"), "no secret in messages: {e}");
        let b = backend_at(&s.url("no-such-bucket-here", "r"), SECRET_KEY, 2);
        let e = b.get(FileKind::Config, "config").unwrap_err().to_string();
        assert!(
            e.contains("no-such-bucket-here") && e.contains("does not exist"),
            "{e}"
        );
        // (SeaweedFS makes a bucket on the first write to it, so no write is tried here.)
    }

    #[test]
    fn a_store_that_is_down_or_answers_503_is_retried_then_named() {
        // Down: nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let b = backend_at(&format!("s3:http://127.0.0.1:{port}/bkt/r"), SECRET_KEY, 1);
        let e = b.get(FileKind::Config, "config").unwrap_err().to_string();
        assert!(e.contains("reachable") && e.contains("bkt"), "{e}");
        // A storm of 503s: every request retried, then a clear failure.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(mut c) = c else { return };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut c, &mut buf);
                let _ = std::io::Write::write_all(
                    &mut c,
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        let b = backend_at(&format!("s3:http://127.0.0.1:{port}/bkt/r"), SECRET_KEY, 3);
        let e = b.get(FileKind::Config, "config").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("503") && msg.contains("try again later"),
            "{msg}"
        );
        assert!(
            !crate::backend::is_transient(&e),
            "retried here, not again above"
        );
        assert_eq!(seen.load(Ordering::Relaxed), 4, "one try and three retries");
    }
}
