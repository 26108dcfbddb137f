//! Who may do what on the admin listener (pure: no I/O except [`Access::load`]).
//!
//! - Reads (`GET`): loopback clients, plus the CIDRs in `[admin] allow_read_from`.
//!   `/live` and `/ready` are open to every client: they reveal nothing and orchestrators
//!   probe them from outside.
//! - Mutations (`POST`, `PUT`, `DELETE`): with a token file, `Authorization: Bearer <token>`
//!   matching one of its tokens (from any client that can connect); without a token file, only
//!   loopback clients.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::admin::{AdminConfig, AdminToken, parse_tokens};
use crate::state::Shared;

/// The access policy.
#[derive(Clone, Debug, Default)]
pub struct Access {
    tokens: Option<Arc<[AdminToken]>>,
    allow_read_from: Vec<IpNet>,
}

/// Where the admin listener takes its policy from on each request.
#[derive(Clone, Debug)]
pub enum AccessPolicy {
    /// One policy for the listener's lifetime (tests of the API alone).
    Fixed(Arc<Access>),
    /// The `[admin]` table of the configuration in service: a reload that changes the token
    /// file or `allow_read_from` applies to the next request (revoking a token needs no
    /// restart), and a token file that does not load rejects the reload.
    Live(Shared),
}

impl AccessPolicy {
    /// The policy for one request.
    pub(crate) fn current(&self) -> Arc<Access> {
        match self {
            Self::Fixed(a) => Arc::clone(a),
            Self::Live(shared) => Arc::new(Access::of(&shared.current().config.admin)),
        }
    }
}

/// Why a request was refused: the HTTP status and the reason (logged and returned).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Refusal {
    /// 401 (no or wrong token) or 403 (address not allowed).
    pub(crate) status: u16,
    /// In words.
    pub(crate) reason: &'static str,
}

impl Access {
    /// A policy from tokens (None: no token file) and extra read CIDRs.
    pub(crate) fn new(tokens: Option<&str>, allow_read_from: Vec<IpNet>) -> Result<Self, String> {
        let tokens = tokens.map(parse_tokens).transpose()?.map(Arc::from);
        Ok(Self {
            tokens,
            allow_read_from,
        })
    }

    /// Read the token file (if any) and build the policy. Errors name the file.
    pub fn load(token_file: Option<&Path>, allow_read_from: Vec<IpNet>) -> Result<Self, String> {
        let text = match token_file {
            None => None,
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("token file {}: {e}", p.display()))?,
            ),
        };
        Self::new(text.as_deref(), allow_read_from).map_err(|e| match token_file {
            Some(p) => format!("token file {}: {e}", p.display()),
            None => e,
        })
    }

    /// The policy of a loaded `[admin]` table (its token file already read and checked).
    pub(crate) fn of(admin: &AdminConfig) -> Self {
        Self {
            tokens: admin.tokens.clone(),
            allow_read_from: admin.allow_read_from.clone(),
        }
    }

    /// May `peer` read (status, metrics, events, explain, the page)?
    pub(crate) fn may_read(&self, peer: IpAddr) -> Result<(), Refusal> {
        let peer = peer.to_canonical();
        if peer.is_loopback() || self.allow_read_from.iter().any(|n| n.contains(&peer)) {
            Ok(())
        } else {
            Err(Refusal {
                status: 403,
                reason: "reads are allowed from loopback and [admin] allow_read_from only",
            })
        }
    }

    /// May `peer`, sending `authorization` (the header value), mutate? Returns who it is:
    /// `token:NAME` or the client address.
    pub(crate) fn may_write(
        &self,
        peer: IpAddr,
        authorization: Option<&str>,
    ) -> Result<String, Refusal> {
        let peer = peer.to_canonical();
        match &self.tokens {
            None => {
                if peer.is_loopback() {
                    Ok(peer.to_string())
                } else {
                    Err(Refusal {
                        status: 403,
                        reason: "changes are allowed from loopback only (no [admin] token_file)",
                    })
                }
            }
            Some(tokens) => {
                let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
                    return Err(Refusal {
                        status: 401,
                        reason: "changes need Authorization: Bearer <token>",
                    });
                };
                let given = given.trim();
                // Compare against every token so the time taken does not say which matched.
                let mut found = None;
                for t in tokens.iter() {
                    if constant_time_eq(t.secret.as_bytes(), given.as_bytes()) {
                        found = Some(t);
                    }
                }
                match found {
                    Some(t) => Ok(format!("token:{}", t.name)),
                    None => Err(Refusal {
                        status: 401,
                        reason: "invalid token",
                    }),
                }
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn reads() {
        let a = Access::new(None, vec!["10.1.0.0/16".parse().expect("net")]).expect("a");
        assert!(a.may_read(ip("127.0.0.1")).is_ok());
        assert!(a.may_read(ip("127.9.9.9")).is_ok());
        assert!(a.may_read(ip("::1")).is_ok());
        assert!(a.may_read(ip("::ffff:127.0.0.1")).is_ok());
        assert!(a.may_read(ip("10.1.2.3")).is_ok());
        assert!(a.may_read(ip("::ffff:10.1.2.3")).is_ok());
        assert_eq!(a.may_read(ip("10.2.0.1")).expect_err("no").status, 403);
        assert_eq!(a.may_read(ip("2001:db8::1")).expect_err("no").status, 403);
    }

    #[test]
    fn writes_without_tokens_are_loopback_only() {
        let a = Access::new(None, vec!["10.0.0.0/8".parse().expect("net")]).expect("a");
        assert_eq!(a.may_write(ip("127.0.0.1"), None), Ok("127.0.0.1".into()));
        assert_eq!(a.may_write(ip("::1"), Some("Bearer x")), Ok("::1".into()));
        assert_eq!(
            a.may_write(ip("10.0.0.1"), None).expect_err("no").status,
            403
        );
    }

    #[test]
    fn writes_with_tokens_need_a_valid_bearer() {
        let a = Access::new(
            Some("# ops tokens\nops:0123456789abcdef0123\n\nfedcba9876543210fedc\n"),
            vec![],
        )
        .expect("a");
        let ok = a.may_write(ip("192.0.2.1"), Some("Bearer 0123456789abcdef0123"));
        assert_eq!(ok, Ok("token:ops".into()));
        let ok = a.may_write(ip("127.0.0.1"), Some("Bearer fedcba9876543210fedc"));
        assert_eq!(ok, Ok("token:token".into()));
        assert_eq!(
            a.may_write(ip("127.0.0.1"), None).expect_err("none").status,
            401
        );
        let e = a
            .may_write(ip("127.0.0.1"), Some("Bearer 0123456789abcdef0124"))
            .expect_err("wrong");
        assert_eq!(e.reason, "invalid token");
        let e = a
            .may_write(ip("127.0.0.1"), Some("Basic 0123456789abcdef0123"))
            .expect_err("scheme");
        assert_eq!(e.status, 401);
        assert!(!format!("{a:?}").contains("0123456789"), "secret in Debug");
    }

    #[test]
    fn token_file_errors() {
        assert!(Access::new(Some("# nothing\n"), vec![]).is_err());
        let e = Access::new(Some("ops:short\n"), vec![]).expect_err("short");
        assert_eq!(e, "line 1: token is shorter than 16 characters");
        let e = Access::load(Some(Path::new("/nonexistent/tokens")), vec![]).expect_err("io");
        assert!(e.starts_with("token file /nonexistent/tokens: "), "{e}");
    }
}
