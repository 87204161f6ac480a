//! The access rules of the local API (SPEC §9) as pure functions over request facts, so they
//! are testable without a server: Host and Origin checks, the token-in-query refusal, the
//! bearer token (constant-time compare) on TCP, the peer uid on the Unix socket, and the
//! `--public-health` exception.
//!
//! Order of the checks (first failure wins): absolute-form target → Origin → Host → token in
//! query → transport authentication. Browsers are refused before anything else is looked at, and a leaked
//! token in a URL is reported even when the header is also present.

use super::error::ApiError;

/// How the request reached the daemon (mirrors the IpcListener's connection info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Unix socket; `peer_uid` from `SO_PEERCRED` when the OS gave it.
    Unix {
        /// Uid of the connecting process.
        peer_uid: Option<u32>,
    },
    /// The loopback TCP port (bearer token required).
    Tcp,
}

/// What an accepted request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Authenticated: every route.
    Full,
    /// Unauthenticated `/v1/health` under `public_health`: only `{"ok":true}`.
    PublicHealth,
}

/// Everything [`authorize`] looks at, borrowed from one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Socket or TCP.
    pub transport: Transport,
    /// The `Host` header, if any. Callers pass a non-UTF-8 or repeated `Host` as `Some("")`,
    /// which fails the check.
    pub host: Option<&'a str>,
    /// Whether an `Origin` header is present, whatever its value.
    pub has_origin: bool,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The raw query string.
    pub query: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The request target was in absolute form (`GET http://host/v1/…`), i.e. a proxy
    /// request: refused with 400 whatever its host names.
    pub absolute_target: bool,
}

/// The daemon-side settings [`authorize`] checks against.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Our own uid (`getuid()`).
    pub daemon_uid: u32,
    /// The `local-token` contents, trimmed.
    pub token: &'a str,
    /// `ipc.public_health`: TCP `/v1/health` answers `{ok}` without a token.
    pub public_health: bool,
}

/// Decides whether a request may proceed, and with which [`Access`].
pub fn authorize(facts: &RequestFacts<'_>, policy: &Policy<'_>) -> Result<Access, ApiError> {
    if facts.absolute_target {
        return Err(ApiError::invalid(
            "absolute-form request target: send origin-form (`GET /v1/…`)",
        ));
    }
    if facts.has_origin {
        return Err(ApiError::ForbiddenOrigin);
    }
    if !host_allowed(facts.host) {
        return Err(ApiError::ForbiddenHost);
    }
    if query_has_token(facts.query) {
        return Err(ApiError::TokenInQuery);
    }
    match facts.transport {
        Transport::Unix {
            peer_uid: Some(uid),
        } if uid != policy.daemon_uid => Err(ApiError::ForbiddenPeer {
            peer_uid: uid,
            daemon_uid: policy.daemon_uid,
        }),
        // Without SO_PEERCRED the 0600 socket in its 0700 dir is the guard.
        Transport::Unix { .. } => Ok(Access::Full),
        Transport::Tcp => match bearer_token(facts.authorization) {
            Some(given) if token_matches(given, policy.token) => Ok(Access::Full),
            Some(_) => Err(ApiError::Unauthorized),
            None if policy.public_health && facts.path == "/v1/health" => Ok(Access::PublicHealth),
            None => Err(ApiError::Unauthorized),
        },
    }
}

/// True when `given` equals the daemon token; an empty daemon token matches nothing.
fn token_matches(given: &str, token: &str) -> bool {
    !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Compares two byte strings in time that depends only on their lengths, never on where
/// they first differ (the token's length is public: 43 base64url chars).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    // A length difference is folded into the accumulator instead of returning early.
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// True when the `Host` header is absent or names the loopback (`localhost`, `127.0.0.1`,
/// `[::1]`), with or without a numeric port.
pub fn host_allowed(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, tail)) => (
                format!("[{inner}]"),
                match tail {
                    "" => None,
                    t => match t.strip_prefix(':') {
                        Some(p) => Some(p),
                        None => return false,
                    },
                },
            ),
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n.to_string(), Some(p)),
            None => (host.to_string(), None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
    let name_ok = name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]";
    port_ok && name_ok
}

/// True when the query string carries a `token` parameter (percent-encoded names included).
/// Both `&` and `;` separate parameters (some servers and frameworks accept either).
pub fn query_has_token(query: &str) -> bool {
    query
        .split(['&', ';'])
        .map(|pair| pair.split_once('=').map_or(pair, |(k, _)| k))
        .any(|key| percent_decode(key).eq_ignore_ascii_case("token"))
}

/// Decodes `%XX` escapes and `+` of one query component; invalid escapes stay verbatim.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cr3t-token-value_0123456789abcdefghijklmn";

    fn facts(transport: Transport) -> RequestFacts<'static> {
        RequestFacts {
            transport,
            host: Some("localhost"),
            has_origin: false,
            authorization: None,
            query: "",
            path: "/v1/send",
            absolute_target: false,
        }
    }

    fn policy(public_health: bool) -> Policy<'static> {
        Policy {
            daemon_uid: 1000,
            token: TOKEN,
            public_health,
        }
    }

    #[test]
    fn constant_time_eq_compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
    }

    #[test]
    fn bearer_header_is_parsed_case_insensitively() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer   abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer")), None);
        assert_eq!(bearer_token(Some("Bearer  ")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn host_must_be_loopback_with_optional_port() {
        for ok in [
            None,
            Some("localhost"),
            Some("LocalHost:47823"),
            Some("127.0.0.1"),
            Some("127.0.0.1:8080"),
            Some("[::1]"),
            Some("[::1]:47823"),
        ] {
            assert!(host_allowed(ok), "{ok:?}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.2",
            "127.0.0.1:",
            "127.0.0.1:80x",
            "[::1",
            "[::1]x",
            "[::2]",
            "::1",
            "",
            "localhost:1:2",
        ] {
            assert!(!host_allowed(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn token_in_query_is_detected_even_when_encoded() {
        assert!(query_has_token("token=abc"));
        assert!(query_has_token("limit=1&TOKEN=abc"));
        assert!(query_has_token("tok%65n=abc"));
        assert!(query_has_token("token"));
        assert!(!query_has_token(""));
        assert!(!query_has_token("tokens=1&x=token"));
    }

    #[test]
    fn semicolon_separates_query_parameters_too() {
        assert!(query_has_token("limit=1;token=abc"));
        assert!(query_has_token("a=1&b=2;tok%65n=x"));
        assert!(!query_has_token("a=token;b=1"));
    }

    #[test]
    fn absolute_form_targets_are_refused_first() {
        let p = policy(false);
        let mut f = facts(Transport::Unix {
            peer_uid: Some(1000),
        });
        f.absolute_target = true;
        f.has_origin = true;
        assert!(matches!(
            authorize(&f, &p),
            Err(ApiError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn tcp_needs_the_exact_bearer_token() {
        let p = policy(false);
        let mut f = facts(Transport::Tcp);
        assert!(matches!(authorize(&f, &p), Err(ApiError::Unauthorized)));
        let good = format!("Bearer {TOKEN}");
        f.authorization = Some(&good);
        assert_eq!(authorize(&f, &p).unwrap(), Access::Full);
        let bad = format!("Bearer {TOKEN}x");
        f.authorization = Some(&bad);
        assert!(matches!(authorize(&f, &p), Err(ApiError::Unauthorized)));
    }

    #[test]
    fn empty_daemon_token_never_authenticates() {
        let p = Policy {
            token: "",
            ..policy(false)
        };
        let mut f = facts(Transport::Tcp);
        f.authorization = Some("Bearer x");
        assert!(matches!(authorize(&f, &p), Err(ApiError::Unauthorized)));
    }

    #[test]
    fn public_health_opens_only_health_and_only_without_a_token() {
        let mut f = facts(Transport::Tcp);
        f.path = "/v1/health";
        assert!(matches!(
            authorize(&f, &policy(false)),
            Err(ApiError::Unauthorized)
        ));
        assert_eq!(authorize(&f, &policy(true)).unwrap(), Access::PublicHealth);
        f.authorization = Some("Bearer wrong");
        assert!(matches!(
            authorize(&f, &policy(true)),
            Err(ApiError::Unauthorized)
        ));
        let mut other = facts(Transport::Tcp);
        other.path = "/v1/peers";
        assert!(matches!(
            authorize(&other, &policy(true)),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn socket_checks_the_peer_uid_and_needs_no_token() {
        let p = policy(false);
        let same = facts(Transport::Unix {
            peer_uid: Some(1000),
        });
        assert_eq!(authorize(&same, &p).unwrap(), Access::Full);
        let other = facts(Transport::Unix {
            peer_uid: Some(1001),
        });
        assert!(matches!(
            authorize(&other, &p),
            Err(ApiError::ForbiddenPeer { peer_uid: 1001, .. })
        ));
        let unknown = facts(Transport::Unix { peer_uid: None });
        assert_eq!(authorize(&unknown, &p).unwrap(), Access::Full);
    }

    #[test]
    fn origin_host_and_query_token_are_refused_before_authentication() {
        let p = policy(false);
        let mut f = facts(Transport::Unix {
            peer_uid: Some(1000),
        });
        f.has_origin = true;
        f.host = Some("evil.example");
        assert!(matches!(authorize(&f, &p), Err(ApiError::ForbiddenOrigin)));
        f.has_origin = false;
        assert!(matches!(authorize(&f, &p), Err(ApiError::ForbiddenHost)));
        f.host = Some("127.0.0.1:1");
        f.query = "token=abc";
        assert!(matches!(authorize(&f, &p), Err(ApiError::TokenInQuery)));
        let good = format!("Bearer {TOKEN}");
        let mut t = facts(Transport::Tcp);
        t.authorization = Some(&good);
        t.query = "a=1&token=x";
        assert!(matches!(authorize(&t, &p), Err(ApiError::TokenInQuery)));
    }
}
