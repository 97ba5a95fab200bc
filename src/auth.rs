//! Who may write: the bearer token check for uploads and deletes.
//!
//! With a token configured, a write needs `Authorization: Bearer <token>`. With none, only
//! clients on the loopback interface may write, so a laptop run works at once while a
//! misconfigured deployment refuses every write from the network.

use std::io;
use std::path::PathBuf;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Where the expected token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// No token: loopback clients only.
    None,
    /// Given on the command line or in the environment.
    Inline(String),
    /// A file, read on every write so that a rotated Kubernetes Secret takes effect at once;
    /// white space around it (the trailing newline) is ignored.
    File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
    // SECURITY: never print the token itself, not even in a debug dump of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(path) => write!(f, "File({path:?})"),
        }
    }
}

impl TokenSource {
    /// The token in force now, or `None` when no token is configured.
    ///
    /// # Errors
    /// The token file cannot be read, or holds nothing but white space.
    pub fn current(&self) -> io::Result<Option<String>> {
        match self {
            Self::None => Ok(None),
            Self::Inline(token) => Ok(Some(token.clone())),
            Self::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path:?}: {e}")))?;
                // NOTE: HTTP strips white space around header values, so a token ending in white
                // space could never match; the trailing newline of `echo token > file` is common.
                let token = text.trim();
                if token.trim().is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{path:?} holds no token"),
                    ));
                }
                Ok(Some(token.to_owned()))
            }
        }
    }

    pub fn is_configured(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// Lets the request write, or says why not.
///
/// # Errors
/// 401 for a missing or wrong token, 403 for a non-loopback client when no token is configured,
/// 500 when the token file cannot be read (fails closed).
pub fn authorize_write(source: &TokenSource, req: &HttpRequest) -> Result<(), ApiError> {
    let expected = source.current().map_err(ApiError::TokenUnavailable)?;

    let Some(expected) = expected else {
        let loopback = req
            .peer_addr()
            .is_some_and(|addr| addr.ip().to_canonical().is_loopback());
        return if loopback {
            Ok(())
        } else {
            Err(ApiError::WritesNeedToken)
        };
    };

    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?
        .as_bytes();
    let presented = bearer_token(presented).ok_or(ApiError::MissingToken)?;

    if tokens_match(presented, expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::WrongToken)
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// SECURITY: compares digests in constant time, so neither the content nor the length of the
/// expected token leaks through response timing.
fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_exact() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer abc "), Some(&b"abc "[..]));
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match(b"secret", b"secret"));
        assert!(!tokens_match(b"secreT", b"secret"));
        assert!(!tokens_match(b"secret ", b"secret"));
        assert!(!tokens_match(b"", b"secret"));
    }

    #[test]
    fn token_file_ignores_surrounding_white_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret \r\n").unwrap();
        let source = TokenSource::File(path.clone());
        assert_eq!(source.current().unwrap().as_deref(), Some("s3cret"));

        std::fs::write(&path, "\n").unwrap();
        assert!(source.current().is_err());
    }
}
