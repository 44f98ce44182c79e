//! Bearer-token authentication. Sessions belong to the token that opened
//! them, so the token's identity travels with every request.
//!
//! Tokens are held as SHA-256 digests and compared in constant time against
//! every accepted digest, so neither the table's layout nor an early exit
//! tells a prober how close a guess came.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Who made a request: a digest of their bearer token, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(pub String);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading tokens file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("no bearer tokens configured (use --tokens-file or OURO_TOKENS)")]
    NoTokens,
}

/// The accepted tokens, held as digests.
#[derive(Clone)]
pub struct TokenSet {
    digests: Arc<Vec<[u8; 32]>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Tokens from a file (one per line; blank lines and `#` comments are
/// skipped) and from a list.
pub fn read_tokens(file: Option<&Path>, list: &[String]) -> Result<Vec<String>, AuthError> {
    let mut tokens: Vec<String> = list.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthError::Read { path: path.display().to_string(), source })?;
        tokens.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));
    }
    Ok(tokens)
}

/// The token of an `authorization` header value. The scheme is
/// case-insensitive (RFC 9110 §11.1), the token is not.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl TokenSet {
    /// Tokens from a file and from a comma-separated list; at least one.
    pub fn load(file: Option<&Path>, list: &[String]) -> Result<Self, AuthError> {
        let tokens = read_tokens(file, list)?;
        if tokens.is_empty() {
            return Err(AuthError::NoTokens);
        }
        Ok(Self { digests: Arc::new(tokens.iter().map(|t| digest(t)).collect()) })
    }

    /// Whether `token` is one of the set, in time that does not depend on
    /// which token (if any) it matches.
    pub fn contains(&self, token: &str) -> bool {
        let d = digest(token);
        self.digests.iter().fold(subtle::Choice::from(0u8), |hit, known| hit | known.ct_eq(&d)).into()
    }

    /// The owner a bare token stands for (transports without headers).
    pub fn owner_of(&self, token: &str) -> Result<Owner, Status> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Status::unauthenticated("missing bearer token"));
        }
        if !self.contains(token) {
            return Err(Status::unauthenticated("unknown bearer token"));
        }
        Ok(Owner(hex::encode(&digest(token)[..16])))
    }

    /// Checks `authorization: Bearer <token>`; the caller's identity goes
    /// into the request's extensions for the handlers.
    pub fn check(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let owner = self.owner_of(token)?;
        req.extensions_mut().insert(owner);
        Ok(req)
    }
}

/// The caller of an authenticated request.
pub fn owner<T>(req: &Request<T>) -> Result<Owner, Status> {
    req.extensions().get::<Owner>().cloned().ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_map_to_distinct_owners() {
        let set = TokenSet::load(None, &["alpha".into(), "beta".into()]).unwrap();
        let a = set.check(request(Some("Bearer alpha"))).unwrap();
        let b = set.check(request(Some("Bearer beta"))).unwrap();
        assert_ne!(owner(&a).unwrap(), owner(&b).unwrap());
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        let set = TokenSet::load(None, &["alpha".into()]).unwrap();
        for auth in ["bearer alpha", "BEARER alpha", "Bearer  alpha"] {
            assert!(set.check(request(Some(auth))).is_ok(), "{auth}");
        }
        assert!(set.check(request(Some("Bearer ALPHA"))).is_err());
    }

    #[test]
    fn bad_credentials_are_unauthenticated() {
        let set = TokenSet::load(None, &["alpha".into()]).unwrap();
        for auth in
            [None, Some("alpha"), Some("Bearer nope"), Some("Basic alpha"), Some("Bearer "), Some("Bearer alph")]
        {
            let err = set.check(request(auth)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{auth:?}");
        }
    }

    #[test]
    fn no_tokens_is_an_error() {
        assert!(matches!(TokenSet::load(None, &[" ".into()]), Err(AuthError::NoTokens)));
    }
}
