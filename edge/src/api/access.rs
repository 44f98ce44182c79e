//! Who may call the API: the `Host` allow-list and the optional API keys,
//! checked before any route runs.
//!
//! A daemon on loopback is still reachable from every web page the user
//! opens: a page on `evil.example` whose DNS answer is rebound to 127.0.0.1
//! passes the browser's same-origin check, but its requests still carry
//! `Host: evil.example`, hence the allow-list. The keys keep out other
//! local users' processes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConstantTimeEq};

use super::config::ApiConfig;
use super::error::ApiError;

/// The access rules, prepared once from an [`ApiConfig`].
#[derive(Debug)]
pub struct Access {
    /// Normalised host names; `None` when `*` allows any.
    hosts: Option<Vec<String>>,
    keys: Vec<Vec<u8>>,
}

impl Access {
    pub fn new(config: &ApiConfig) -> Self {
        let hosts = if config.allowed_hosts.iter().any(|h| h.trim() == "*") {
            None
        } else {
            Some(config.allowed_hosts.iter().filter_map(|h| host_name(h)).collect())
        };
        let keys = config.api_keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()).map(|k| k.into()).collect();
        Self { hosts, keys }
    }

    fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        self.check_host(uri, headers)?;
        // A supervisor's liveness probe needs no secret, and learns nothing
        // from the answer that `ps` would not tell it.
        let probe = matches!(*method, Method::GET | Method::HEAD) && uri.path() == "/health";
        if !self.keys.is_empty() && !probe {
            self.check_key(headers)?;
        }
        Ok(())
    }

    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(allowed) = &self.hosts else {
            return Ok(());
        };
        // Every name the request carries must pass: an absolute-form target
        // or HTTP/2 `:authority` (the URI's authority) as well as `Host`.
        let mut names = uri.authority().map(|a| a.as_str().to_owned()).into_iter().collect::<Vec<_>>();
        for value in headers.get_all(header::HOST) {
            names.push(value.to_str().map_err(|_| refused_host("(not text)"))?.to_owned());
        }
        if names.is_empty() {
            return Err(ApiError::HostNotAllowed(
                "the request has no Host header; this daemon answers only requests naming an allowed host \
                 (--allowed-hosts)"
                    .into(),
            ));
        }
        for name in &names {
            match host_name(name) {
                Some(host) if allowed.contains(&host) => {}
                _ => return Err(refused_host(name)),
            }
        }
        Ok(())
    }

    fn check_key(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized("missing API key: send `Authorization: Bearer <key>`".into()));
        };
        let given = value.to_str().ok().and_then(bearer).unwrap_or("");
        // No early exit: every key is compared, whichever (if any) matches.
        let hit = self.keys.iter().fold(Choice::from(0), |hit, key| hit | same_key(key, given.as_bytes()));
        if bool::from(hit) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("invalid API key".into()))
        }
    }
}

fn refused_host(name: &str) -> ApiError {
    // Debug-quoted: the name is the client's, and may hold anything.
    ApiError::HostNotAllowed(format!("requests for host {name:?} are not allowed by this daemon (--allowed-hosts)"))
}

/// The middleware: refuses before the route (and before the body is read).
pub async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    match access.check(req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The host of a `Host` value or URI authority, as compared: without
/// userinfo, port, IPv6 brackets or a trailing dot, lower-cased. `None` when
/// it is not a host at all.
pub fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim();
    let a = a.rsplit_once('@').map_or(a, |(_, host)| host);
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        match after {
            "" => (inside, None),
            _ => (inside, Some(after.strip_prefix(':')?)),
        }
    } else if a.matches(':').count() > 1 {
        // A bare IPv6 address, as written in an allow-list.
        (a, None)
    } else {
        match a.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (a, None),
        }
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The token of an `Authorization` value: the scheme is case-insensitive
/// (RFC 9110 §11.1), the token is not.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `known == given` in time that depends only on `known`'s length, so a
/// prober learns neither how much of a guess was right nor the key's length.
fn same_key(known: &[u8], given: &[u8]) -> Choice {
    let padded: Vec<u8> = (0..known.len()).map(|i| given.get(i).copied().unwrap_or(0)).collect();
    known.ct_eq(&padded) & (known.len() as u64).ct_eq(&(given.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_normalised() {
        let cases = [
            ("localhost", Some("localhost")),
            ("LocalHost:8080", Some("localhost")),
            ("127.0.0.1:1", Some("127.0.0.1")),
            ("[::1]:8080", Some("::1")),
            ("[::1]", Some("::1")),
            ("::1", Some("::1")),
            ("localhost.", Some("localhost")),
            ("user@localhost:80", Some("localhost")),
            ("localhost:evil", None),
            ("[::1]evil", None),
            ("[::1", None),
            (":80", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(host_name(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn keys_match_exactly() {
        assert!(bool::from(same_key(b"sk-abc", b"sk-abc")));
        for wrong in [&b"sk-ab"[..], b"sk-abcd", b"sk-abd", b"", b"SK-ABC"] {
            assert!(!bool::from(same_key(b"sk-abc", wrong)), "{wrong:?}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer k"), Some("k"));
        assert_eq!(bearer("bearer  k "), Some("k"));
        assert_eq!(bearer("BEARER k"), Some("k"));
        assert_eq!(bearer("Basic k"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
