//! Bearer tokens: every endpoint but `/healthz` (and the spec) needs one from the config's
//! `[[server.tokens]]`; a `read` token lists and reads, an `operator` token also starts and
//! cancels jobs. The status page sends the same token from a cookie its login form sets.
//! Every refusal is written to the audit log with the path and the reason (never the token).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use zeroize::Zeroizing;

use super::AppState;
use super::api::ApiError;
use crate::error::{Error, Result};
use crate::site::audit::{self, Entry};
use crate::site::config::{Role, TokenSource};

/// The cookie the status page keeps the token in.
pub const COOKIE: &str = "cairn_token";

/// A token the service accepts.
pub struct Credential {
    /// Its name in the config.
    pub name: String,
    secret: Zeroizing<String>,
    /// What it may do.
    pub role: Role,
}

/// Reads the config's tokens (their files now, so a missing file stops the start).
pub fn load(tokens: &[crate::site::config::Token]) -> Result<Vec<Credential>> {
    tokens
        .iter()
        .map(|t| {
            let secret = match &t.source {
                TokenSource::Inline(s) => s.clone(),
                TokenSource::File(f) => {
                    let b = std::fs::read(f).map_err(|e| Error::io(f, e))?;
                    let s = String::from_utf8(crate::site::first_line(&b)).map_err(|_| {
                        Error::Invalid(format!("token file {} is not UTF-8 text", f.display()))
                    })?;
                    if s.len() < 16 {
                        return Err(Error::Invalid(format!(
                            "token file {} holds fewer than 16 characters: use a long random token (e.g. `openssl rand -hex 32`)",
                            f.display()
                        )));
                    }
                    s
                }
            };
            Ok(Credential {
                name: t.name.clone(),
                secret: Zeroizing::new(secret),
                role: t.role,
            })
        })
        .collect()
}

/// Whether two tokens are equal, in time that depends on neither: their digests are
/// compared whole (`blake3::Hash`'s equality is constant-time), so neither a prefix nor the
/// length leaks through timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    blake3::hash(a) == blake3::hash(b)
}

/// The token a request carries: `Authorization: Bearer T`, else the page's cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, t) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| t.trim().to_string());
    }
    cookie(headers, COOKIE)
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The credential `token` is, if any (every credential is compared, matching or not).
pub fn lookup<'a>(creds: &'a [Credential], token: &str) -> Option<&'a Credential> {
    creds.iter().fold(None, |found, c| {
        if same(c.secret.as_bytes(), token.as_bytes()) {
            Some(c)
        } else {
            found
        }
    })
}

/// Writes an audit line off the request's thread (the log is fsynced).
pub fn log_off_thread(state_dir: std::path::PathBuf, e: Entry) {
    let write = move || {
        if let Err(err) = audit::append(&state_dir, &e) {
            eprintln!("cairn: warning: the refused request could not be logged: {err}");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => drop(h.spawn_blocking(write)),
        Err(_) => write(),
    }
}

/// Checks the request's token against `need`; returns the token's name.
pub fn authorize(
    state: &AppState,
    parts: &Parts,
    need: Role,
) -> std::result::Result<String, ApiError> {
    let path = parts.uri.path().to_string();
    let refuse = |status: StatusCode, error: &str, detail: String, who: Option<&str>| {
        let mut e = Entry::new("auth", &state.site.host());
        e.result = "denied".into();
        e.error = Some(detail.clone());
        e.detail = serde_json::json!({
            "method": parts.method.as_str(), "path": path, "token": who,
        });
        log_off_thread(state.site.config.state_dir.clone(), e);
        ApiError::new(status, error, detail)
    };
    let Some(token) = presented(&parts.headers) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no token: send `Authorization: Bearer TOKEN` with a token from [[server.tokens]]"
                .into(),
            None,
        ));
    };
    let Some(c) = lookup(&state.tokens, &token) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not one of [[server.tokens]]".into(),
            None,
        ));
    };
    if need == Role::Operator && c.role != Role::Operator {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {} is read-only; this needs a token with role = \"operator\"",
                c.name
            ),
            Some(&c.name),
        ));
    }
    Ok(c.name.clone())
}

/// A caller with at least a `read` token (its name).
pub struct Reader(pub String);

/// A caller with an `operator` token (its name).
pub struct Operator(pub String);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, ApiError> {
        authorize(state, parts, Role::Read).map(Reader)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, ApiError> {
        authorize(state, parts, Role::Operator).map(Operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_headers_and_cookies() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented(&h), None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; cairn_token=xyz; b=2".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("xyz"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
