//! Exact accounting: every message a scenario sent is delivered once, duplicated (on the wire,
//! seen in the broker's queue; or in the receiver's inbox), lost (accepted, not delivered, not
//! pending) or stuck (accepted, still pending or in flight at the deadline).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use claudemeshd::client::{self, Endpoint};
use serde_json::json;

use crate::harness::Daemon;

/// The numbers of one scenario.
#[derive(Default)]
pub struct Tally {
    /// Send requests made.
    pub sent: usize,
    /// Answered 202 (or 200 duplicate): the daemon owes their delivery.
    pub accepted: usize,
    /// Accepted and in the receiver's inbox exactly once.
    pub delivered_once: usize,
    /// Extra copies the broker queued for one client_message_id (a resend after a crash).
    pub dup_wire: usize,
    /// Extra copies in the receiver's inbox.
    pub dup_inbox: usize,
    /// Accepted, not delivered, not pending.
    pub lost: usize,
    /// Accepted, still pending or in flight at the deadline.
    pub stuck: usize,
    /// Of `stuck`: the sender's row done, the broker's copy still undelivered.
    pub stuck_at_broker: usize,
    /// Of `lost`: the sender's row done and the broker's copy marked delivered, yet not in
    /// the inbox (a seed broker's at-most-once drain, BROKER-PROTOCOL §7.2).
    pub lost_after_broker_delivered: usize,
    /// 5xx answers other than the ones the scenario allows.
    pub bad_5xx: usize,
    /// The receivers' inboxes could not be read at the end (the counts are from an earlier
    /// read, so "lost" is not to be trusted).
    pub inbox_unreadable: bool,
    /// Free text for the table.
    pub notes: Vec<String>,
}

/// What a sender learned about its sends.
#[derive(Default)]
pub struct Sends {
    pub sent: usize,
    /// Ids answered 202/200.
    pub accepted: Vec<String>,
    /// Ids whose request failed in transport (daemon killed mid-request): maybe accepted.
    pub maybe: Vec<String>,
    /// Statuses that are neither 2xx nor transport errors, by status.
    pub other: HashMap<u16, usize>,
}

impl Sends {
    /// One `POST /v1/send` of a DM whose body and client_message_id are both `id`.
    pub fn send(&mut self, d: &Daemon, to: &str, id: &str) -> Option<u16> {
        self.sent += 1;
        let body = json!({"to": to, "message": id, "client_message_id": id}).to_string();
        match d.request("POST", "/v1/send", Some(&body)) {
            Ok(r) if r.status == 202 || r.status == 200 => {
                self.accepted.push(id.to_string());
                Some(r.status)
            }
            Ok(r) => {
                *self.other.entry(r.status).or_default() += 1;
                Some(r.status)
            }
            Err(_) => {
                self.maybe.push(id.to_string());
                None
            }
        }
    }

    /// Adds another sender's record to this one.
    pub fn absorb(&mut self, other: Sends) {
        self.sent += other.sent;
        self.accepted.extend(other.accepted);
        self.maybe.extend(other.maybe);
        for (status, n) in other.other {
            *self.other.entry(status).or_default() += n;
        }
    }

    /// 5xx answers other than `allowed`.
    pub fn bad_5xx(&self, allowed: &[u16]) -> usize {
        self.other
            .iter()
            .filter(|(s, _)| **s >= 500 && !allowed.contains(s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Counts of client_message_ids in `d`'s inbox (every page), read from the bodies; `None` when
/// a page could not be read (each request may take 60 s: a loaded debug daemon serving a page
/// of 500 rows is slow, and a timed-out read must not pass for an empty inbox).
pub fn inbox_counts(d: &Daemon) -> Option<HashMap<String, usize>> {
    let sock = d.socket();
    let mut counts = HashMap::new();
    let mut before: Option<i64> = None;
    for _ in 0..1000 {
        let path = match before {
            Some(b) => format!("/v1/inbox?limit=500&before={b}"),
            None => "/v1/inbox?limit=500".to_string(),
        };
        let r = client::request(
            &Endpoint::Socket(&sock),
            "GET",
            &path,
            None,
            Duration::from_secs(60),
        )
        .ok()
        .filter(|r| r.status == 200)?;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        for item in v["items"].as_array().into_iter().flatten() {
            // Every torture message's body starts with its client_message_id (a seed broker's
            // push does not carry the sender's id).
            if let Some(b) = item["body"].as_str().and_then(|b| b.split(' ').next()) {
                *counts.entry(b.to_string()).or_default() += 1;
            }
        }
        match v["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => return Some(counts),
        }
    }
    Some(counts)
}

/// The broker's queue per client_message_id: how many copies it queued, and whether any was
/// delivered (seed: drained to the receiver's socket; head: `client_ack`ed).
pub fn wire_counts(broker_state: &Path) -> HashMap<String, (usize, bool)> {
    let mut counts: HashMap<String, (usize, bool)> = HashMap::new();
    // A failed read must not pass for an empty queue (every copy would look "not queued").
    let rows = claudemesh_devbroker::queue_rows_in(broker_state).unwrap_or_else(|e| {
        panic!(
            "reading the broker queue in {}: {e}",
            broker_state.display()
        )
    });
    for row in rows {
        if let Some(id) = row.client_message_id {
            let e = counts.entry(id).or_default();
            e.0 += 1;
            e.1 |= row.delivered_at.is_some();
        }
    }
    counts
}

/// Every row of `d`'s `outbox.db`: client id → status (read from the file, not the route,
/// which pages at 500 rows).
fn outbox_statuses(d: &Daemon) -> HashMap<String, String> {
    let db = d.daemon_dir.join("outbox.db");
    let read = || -> rusqlite::Result<HashMap<String, String>> {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut stmt = conn.prepare("SELECT client_message_id, status FROM outbox")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.collect()
    };
    read().unwrap_or_else(|e| panic!("reading {}: {e}", db.display()))
}

/// Waits (polling every second, at most `timeout`) until every accepted id is in `receiver`'s
/// inbox, then counts. A `maybe` id that arrived counts as accepted (its 202 was lost with the
/// killed daemon); one that did not is not owed.
pub fn settle(
    sends: &Sends,
    sender: &Daemon,
    receiver: &Daemon,
    broker_state: &Path,
    timeout: Duration,
) -> Tally {
    settle_many(sends, sender, &[receiver], broker_state, timeout)
}

/// [`settle`] over several receivers (their inboxes merged: every id is sent to one of them).
pub fn settle_many(
    sends: &Sends,
    sender: &Daemon,
    receivers: &[&Daemon],
    broker_state: &Path,
    timeout: Duration,
) -> Tally {
    let merged = || -> Option<HashMap<String, usize>> {
        let mut all = HashMap::new();
        for r in receivers {
            for (k, v) in inbox_counts(r)? {
                *all.entry(k).or_default() += v;
            }
        }
        Some(all)
    };
    // TORTURE_SETTLE_SECS overrides the wait (a diagnostic: 0 takes the final snapshot while
    // the run is still draining, which the accounting must survive without false losses).
    let timeout = std::env::var("TORTURE_SETTLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(timeout, Duration::from_secs);
    let start = Instant::now();
    let mut inbox = HashMap::new();
    while start.elapsed() < timeout {
        if let Some(c) = merged() {
            inbox = c;
            if sends.accepted.iter().all(|id| inbox.contains_key(id)) {
                break;
            }
            if std::env::var_os("TORTURE_VERBOSE").is_some() {
                eprintln!(
                    "torture: {:.0} s: {} of {} delivered",
                    start.elapsed().as_secs_f64(),
                    sends
                        .accepted
                        .iter()
                        .filter(|id| inbox.contains_key(*id))
                        .count(),
                    sends.accepted.len()
                );
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // The final snapshots are taken upstream first — the sender's outbox, then the broker's
    // queue, then the inboxes — so a message that moves on between two reads is only ever seen
    // further along than it was. Read downstream first (as this harness once did), a message
    // sent and acked between the queue read and the outbox read showed as "outbox done, broker
    // not queued", and one pushed between the inbox read and the queue read as "broker
    // delivered, not in the inbox": false losses whenever the deadline caught a run still
    // draining.
    let outbox = outbox_statuses(sender);
    let wire = wire_counts(broker_state);
    // Late copies (a redelivery in flight) show up within the next moment. The final count
    // must be read whole: a stale snapshot would count arrivals as lost.
    std::thread::sleep(Duration::from_millis(1500));
    let mut unreadable = true;
    for _ in 0..5 {
        if let Some(c) = merged() {
            inbox = c;
            unreadable = false;
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // A push the broker had already handed over may still be on its way into an inbox (a
    // loaded receiver): read again while the missing set keeps shrinking (bounded).
    let missing = |inbox: &HashMap<String, usize>| {
        sends
            .accepted
            .iter()
            .filter(|id| !inbox.contains_key(*id))
            .count()
    };
    for _ in 0..10 {
        let before = missing(&inbox);
        if unreadable || before == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        match merged() {
            Some(c) => inbox = c,
            None => break,
        }
        if missing(&inbox) == before {
            break;
        }
    }
    let open = |id: &str| {
        outbox
            .get(id)
            .is_some_and(|s| s == "pending" || s == "inflight")
    };
    // Where each lost message was last seen: the sender's row status, and the broker's copy.
    let mut lost_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut t = Tally {
        inbox_unreadable: unreadable,
        sent: sends.sent,
        bad_5xx: sends.bad_5xx(&[]),
        ..Tally::default()
    };
    let maybe_arrived = sends.maybe.iter().filter(|id| inbox.contains_key(*id));
    for id in sends.accepted.iter().chain(maybe_arrived) {
        t.accepted += 1;
        match inbox.get(id).copied().unwrap_or(0) {
            0 if open(id) => {
                if std::env::var_os("TORTURE_VERBOSE").is_some() {
                    eprintln!("torture: stuck in outbox {id}: {:?}", outbox.get(id));
                }
                t.stuck += 1;
            }
            // Still undelivered in the broker's queue (a head claim waiting for a trigger):
            // pending, not gone.
            0 if wire.get(id).is_some_and(|w| !w.1) => {
                if std::env::var_os("TORTURE_VERBOSE").is_some() {
                    eprintln!("torture: stuck at broker {id}: outbox {:?}", outbox.get(id));
                }
                t.stuck += 1;
                t.stuck_at_broker += 1;
            }
            0 => {
                t.lost += 1;
                if std::env::var_os("TORTURE_VERBOSE").is_some() {
                    eprintln!(
                        "torture: lost {id}: outbox {:?}, broker {:?}",
                        outbox.get(id),
                        wire.get(id)
                    );
                }
                let row = outbox.get(id).map_or("no row", String::as_str);
                let broker = match wire.get(id) {
                    None => "not queued",
                    Some((_, true)) if row == "done" => {
                        t.lost_after_broker_delivered += 1;
                        "delivered"
                    }
                    Some((_, true)) => "delivered",
                    Some((_, false)) => "queued",
                };
                *lost_at
                    .entry(format!("outbox {row}, broker {broker}"))
                    .or_default() += 1;
            }
            1 => t.delivered_once += 1,
            n => {
                t.delivered_once += 1;
                t.dup_inbox += n - 1;
            }
        }
        t.dup_wire += wire.get(id).map_or(0, |w| w.0).saturating_sub(1);
    }
    if t.stuck_at_broker > 0 {
        t.notes.push(format!(
            "stuck {}: outbox done, broker queued (undelivered)",
            t.stuck_at_broker
        ));
    }
    for (at, n) in lost_at {
        t.notes.push(format!("lost {n}: {at}"));
    }
    if !sends.maybe.is_empty() {
        t.notes.push(format!(
            "{} sends cut by a kill ({} of them arrived)",
            sends.maybe.len(),
            sends
                .maybe
                .iter()
                .filter(|id| inbox.contains_key(*id))
                .count()
        ));
    }
    t
}

/// The targets every delivery scenario shares; `dedupe`: the broker deduplicates, so no
/// duplicate is allowed, on the wire or in the inbox. Against the plain seed broker a resend
/// after a crash is a new broker message (its push carries no client id for the receiver to
/// deduplicate by): those copies are counted and reported, not failed (SPEC §5.4, at least
/// once).
pub fn problems(t: &Tally, dedupe: bool) -> Vec<String> {
    let mut p = Vec::new();
    if t.inbox_unreadable {
        p.push("a receiver's inbox could not be read at the end".into());
    }
    if t.lost > 0 {
        p.push(format!("{} lost", t.lost));
    }
    if t.stuck > 0 {
        p.push(format!("{} stuck", t.stuck));
    }
    if dedupe && t.dup_inbox > 0 {
        p.push(format!("{} duplicated in the inbox", t.dup_inbox));
    }
    if dedupe && t.dup_wire > 0 {
        p.push(format!("{} duplicated on the dedupe broker", t.dup_wire));
    }
    if t.bad_5xx > 0 {
        p.push(format!("{} unexpected 5xx", t.bad_5xx));
    }
    if t.accepted == 0 {
        p.push("nothing accepted".into());
    }
    p
}
