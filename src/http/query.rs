//! Query-string parameters of the read routes (SPEC §7.2, §7.4, §8), parsed and range-checked
//! into plain structs. Any bad value is a 400 `invalid_request` naming the parameter; unknown
//! parameters are ignored; a repeated parameter takes its last value.

use std::collections::HashSet;

use claudemesh_actors::time::ms_from_iso;

use super::error::ApiError;
use super::sse::parse_last_event_id;

/// Event kinds a `?kinds=` filter may name (SPEC §7.3).
pub const EVENT_KINDS: [&str; 7] = [
    "message",
    "peer_join",
    "peer_leave",
    "broker_status",
    "outbox_dead",
    "system",
    "session_left",
];

/// Decoded `key=value` pairs of a query string.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes a raw query string (percent-escapes and `+`).
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
            .map(|q| Params(q.into_inner()))
            .map_err(|e| ApiError::invalid(format!("malformed query string: {e}")))
    }

    /// The last value of `key`; an empty value counts as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `key` as an integer in `min..=max`, or `default` when absent.
    pub fn int_in(&self, key: &str, min: i64, max: i64, default: i64) -> Result<i64, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(format!("`{key}` must be an integer in {min}..{max}"))
                }),
        }
    }
}

/// Parses `since`: unix milliseconds (digits only) or ISO 8601.
pub fn parse_since(raw: &str) -> Result<i64, ApiError> {
    let raw = raw.trim();
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>().ok()
    } else {
        ms_from_iso(raw)
    };
    parsed.ok_or_else(|| ApiError::invalid("`since` must be ISO 8601 or unix milliseconds"))
}

/// `GET /v1/inbox` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxParams {
    /// Only rows received at or after this unix ms.
    pub since_ms: Option<i64>,
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this sender pubkey.
    pub from: Option<String>,
    /// Only this mesh.
    pub mesh: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub limit: usize,
    /// Cursor from a previous page's `next_before`.
    pub before: Option<i64>,
    /// `unread_only=true`: only rows never marked seen.
    pub unread_only: bool,
    /// `mark_seen=true`: mark the returned rows seen.
    pub mark_seen: bool,
}

/// A boolean parameter: `true`/`1` or `false`/`0` (default `false`).
pub fn bool_param(p: &Params, key: &str) -> Result<bool, ApiError> {
    match p.get(key).map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(_) => Err(ApiError::invalid(format!("`{key}` must be true or false"))),
    }
}

impl InboxParams {
    /// Parses and checks the query string.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let p = Params::parse(query)?;
        Ok(InboxParams {
            since_ms: p.get("since").map(parse_since).transpose()?,
            topic: p.get("topic").map(str::to_string),
            from: p.get("from").map(str::to_string),
            mesh: p.get("mesh").map(str::to_string),
            limit: to_usize(p.int_in("limit", 1, 1000, 100)?),
            before: match p.get("before") {
                None => None,
                Some(_) => Some(p.int_in("before", 0, i64::MAX, 0)?),
            },
            unread_only: bool_param(&p, "unread_only")?,
            mark_seen: bool_param(&p, "mark_seen")?,
        })
    }
}

/// The outbox status names a client may filter by (`failed` is the CLI's word for `dead`).
pub fn outbox_status_name(raw: &str) -> Result<&'static str, ApiError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "pending" => Ok("pending"),
        "inflight" => Ok("inflight"),
        "done" => Ok("done"),
        "dead" | "failed" => Ok("dead"),
        "aborted" => Ok("aborted"),
        other => Err(ApiError::invalid(format!(
            "unknown status {other:?} (pending|inflight|done|dead|failed|aborted)"
        ))),
    }
}

/// `GET /v1/outbox` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxParams {
    /// Canonical status name, or `None` for every status.
    pub status: Option<&'static str>,
    /// Rows to return, 1..=500 (default 100).
    pub limit: usize,
}

impl OutboxParams {
    /// Parses and checks the query string.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let p = Params::parse(query)?;
        Ok(OutboxParams {
            status: p.get("status").map(outbox_status_name).transpose()?,
            limit: to_usize(p.int_in("limit", 1, 500, 100)?),
        })
    }
}

/// `GET /v1/events` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventParams {
    /// Wanted kinds; empty = all.
    pub kinds: HashSet<String>,
    /// Wanted mesh slug.
    pub mesh: Option<String>,
    /// `?last_event_id=` (the `Last-Event-ID` header wins over it).
    pub last_event_id: Option<i64>,
}

impl EventParams {
    /// Parses and checks the query string.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let p = Params::parse(query)?;
        let mut kinds = HashSet::new();
        for kind in p.get("kinds").unwrap_or("").split(',') {
            let kind = kind.trim();
            if kind.is_empty() {
                continue;
            }
            if !EVENT_KINDS.contains(&kind) {
                return Err(ApiError::invalid(format!(
                    "unknown event kind {kind:?} ({})",
                    EVENT_KINDS.join("|")
                )));
            }
            kinds.insert(kind.to_string());
        }
        let last_event_id = match p.get("last_event_id") {
            None => None,
            Some(raw) => Some(parse_last_event_id(raw).ok_or_else(|| {
                ApiError::invalid("`last_event_id` must be a non-negative integer")
            })?),
        };
        Ok(EventParams {
            kinds,
            mesh: p.get("mesh").map(str::to_string),
            last_event_id,
        })
    }
}

/// A range-checked positive count as `usize` (the ranges above are far below `usize::MAX`).
fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidRequest { detail }) => detail,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn inbox_defaults_and_every_parameter() {
        let p = InboxParams::parse("").unwrap();
        assert_eq!(p.limit, 100);
        assert_eq!((p.since_ms, p.before), (None, None));
        let p = InboxParams::parse(
            "since=2024-05-03T01:33:20.000Z&topic=t&from=ab&mesh=m&limit=1000&before=77",
        )
        .unwrap();
        assert_eq!(p.since_ms, Some(1_714_700_000_000));
        assert_eq!(p.topic.as_deref(), Some("t"));
        assert_eq!(p.from.as_deref(), Some("ab"));
        assert_eq!(p.mesh.as_deref(), Some("m"));
        assert_eq!(p.limit, 1000);
        assert_eq!(p.before, Some(77));
        assert_eq!(
            InboxParams::parse("since=1714700000000").unwrap().since_ms,
            Some(1_714_700_000_000)
        );
    }

    #[test]
    fn inbox_bad_values_are_invalid_requests() {
        assert!(invalid(InboxParams::parse("limit=0")).contains("limit"));
        assert!(invalid(InboxParams::parse("limit=1001")).contains("limit"));
        assert!(invalid(InboxParams::parse("limit=ten")).contains("limit"));
        assert!(invalid(InboxParams::parse("since=yesterday")).contains("since"));
        assert!(invalid(InboxParams::parse("before=-1")).contains("before"));
        assert!(invalid(InboxParams::parse("before=x")).contains("before"));
    }

    #[test]
    fn outbox_status_accepts_failed_as_dead() {
        assert_eq!(
            OutboxParams::parse("status=failed&limit=500").unwrap(),
            OutboxParams {
                status: Some("dead"),
                limit: 500
            }
        );
        assert_eq!(OutboxParams::parse("").unwrap().status, None);
        for s in ["pending", "inflight", "done", "dead", "aborted"] {
            assert_eq!(
                OutboxParams::parse(&format!("status={s}")).unwrap().status,
                Some(s)
            );
        }
        assert!(invalid(OutboxParams::parse("status=lost")).contains("status"));
        assert!(invalid(OutboxParams::parse("limit=501")).contains("limit"));
    }

    #[test]
    fn event_filters_and_last_event_id() {
        let p = EventParams::parse("kinds=message,%20peer_join,&mesh=m&last_event_id=12").unwrap();
        let want: HashSet<String> = ["message", "peer_join"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(p.kinds, want);
        assert_eq!(p.mesh.as_deref(), Some("m"));
        assert_eq!(p.last_event_id, Some(12));
        assert!(EventParams::parse("").unwrap().kinds.is_empty());
        assert!(invalid(EventParams::parse("kinds=message,bogus")).contains("bogus"));
        assert!(invalid(EventParams::parse("last_event_id=-3")).contains("last_event_id"));
    }

    #[test]
    fn repeated_parameters_take_the_last_value() {
        assert_eq!(InboxParams::parse("limit=5&limit=7").unwrap().limit, 7);
    }
}
