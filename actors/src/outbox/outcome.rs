//! The outcome table of SPEC §5.4, pure: what a drained row's result ([`Step`]) means for the
//! row ([`Change`]), and the SQL that records it ([`apply_one`], run in the drainer's group
//! apply). No actix.

use super::store::{self, OutboxRow, RetryOutcome};
use crate::broker::msg::DeliveryOutcome;

/// `last_error` of a row that waits behind an older row of the target its name resolved to.
pub(crate) const BEHIND_ERROR: &str = "waiting_behind_earlier_send";

/// `last_error` of a row of a drain window sent again because an older row of its
/// destination failed first.
pub(crate) const BEHIND_FAILURE_ERROR: &str = "behind_failed_send";

/// How one dispatch of a row ended.
#[derive(Debug)]
pub(crate) enum Step {
    /// The connection answered (ack, timeout, or not connected).
    Delivered(DeliveryOutcome),
    /// A name could not be resolved (`unknown_peer` / `ambiguous_peer`).
    Unresolved(&'static str),
    /// The row cannot be sent at all (e.g. encryption failed).
    Permanent(String),
    /// A name resolved at drain time to a target that has an older row open or another row
    /// in flight: the row waits its turn (SPEC §5.4 FIFO, one in flight per destination).
    Behind,
    /// The row could not be prepared for a reason that is not its own (the database refused
    /// recording its target): retry shortly, not counted.
    Deferred(String),
}

/// What that means for the row.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Acked `queued:true`: done with this broker message id.
    Done(String),
    /// Permanent error: dead.
    Dead(String),
    /// `rate_limit:`: pending again, not counted (the connection paused itself on the ack).
    RateLimited(String),
    /// Not counted, retry after the given delay (ms).
    Uncounted(String, i64),
    /// Target offline or unresolved: not counted, offline backoff.
    Offline(String),
    /// Counted attempt with backoff.
    Counted(String),
}

/// The store operation recording a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Done(String),
    Dead(String),
    /// Error, counted, next attempt at.
    Retry(String, bool, i64),
}

/// One outcome waiting for the next group apply.
pub(crate) struct Update {
    pub row: OutboxRow,
    pub op: Op,
    /// A name resolved at drain time, recorded with the outcome.
    pub set_target: Option<String>,
    /// Set when the outcome itself is permanent (the row dies whatever the store says).
    pub dead_error: Option<String>,
    /// The row's destination, freed when the update is applied.
    pub dest: String,
}

/// Maps a dispatch result to the row's change. `closing`: the daemon is shutting down, so a
/// lost link is not the row's fault.
pub(crate) fn classify(step: Step, closing: bool) -> Change {
    match step {
        Step::Delivered(DeliveryOutcome::Acked {
            queued: true,
            message_id,
            ..
        }) => Change::Done(message_id),
        Step::Delivered(DeliveryOutcome::Acked { error, .. }) => {
            classify_error(&error.unwrap_or_else(|| "ack without queued and without error".into()))
        }
        Step::Delivered(DeliveryOutcome::Timeout) => Change::Counted("ack_timeout".into()),
        Step::Delivered(DeliveryOutcome::NotConnected { reason }) => {
            if reason == crate::broker::msg::RATE_LIMITED_UNSENT {
                // Held back by the pacer and cancelled by a refusal: never written. Retried
                // like the refused row, without telling the connection again.
                Change::Uncounted(reason, 1_000)
            } else if closing
                || reason == "daemon_shutdown"
                || reason.starts_with("broker_not_open")
            {
                Change::Uncounted(reason, 0)
            } else {
                Change::Counted(reason)
            }
        }
        Step::Unresolved(why) => Change::Offline(why.to_string()),
        Step::Permanent(e) => Change::Dead(e),
        Step::Behind => Change::Uncounted(BEHIND_ERROR.into(), 0),
        Step::Deferred(e) => Change::Uncounted(e, 1_000),
    }
}

/// The ack-error column of SPEC §5.4's outcome table (the broker's exact strings).
pub(crate) fn classify_error(err: &str) -> Change {
    if err.starts_with("rate_limit") {
        Change::RateLimited(err.to_string())
    } else if err.starts_with("no connected peer") {
        Change::Offline(err.to_string())
    } else if err.starts_with("blocked by recipient grants")
        || err.starts_with("payload too large")
        || err.starts_with("idempotency_key_reused")
    {
        Change::Dead(err.to_string())
    } else {
        Change::Counted(err.to_string())
    }
}

/// Applies one outcome; `Some(error)` when the row went dead by attempts.
pub(crate) fn apply_one(
    conn: &rusqlite::Connection,
    id: i64,
    set_target: Option<&str>,
    op: Op,
    max_attempts: i64,
    now: i64,
) -> Result<Option<String>, store::StoreError> {
    if let Some(t) = set_target {
        store::set_target(conn, id, t)?;
    }
    match op {
        Op::Done(mid) => store::mark_done(conn, id, &mid, now).map(|_| None),
        Op::Dead(e) => store::mark_dead(conn, id, &e, now).map(|_| None),
        Op::Retry(e, counted, next) => {
            match store::mark_retry(conn, id, &e, counted, next, max_attempts, now)? {
                RetryOutcome::Pending => Ok(None),
                RetryOutcome::Dead => Ok(Some(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack_error(e: &str) -> Change {
        classify(
            Step::Delivered(DeliveryOutcome::Acked {
                queued: false,
                message_id: String::new(),
                error: Some(e.to_string()),
                duplicate: false,
            }),
            false,
        )
    }

    #[test]
    fn every_broker_error_string_maps_to_its_row_of_the_table() {
        let rate = "rate_limit: max 60 msg/min (burst 10) \u{2014} slow down";
        assert_eq!(ack_error(rate), Change::RateLimited(rate.into()));
        let offline = "no connected peer for target (not online, or targetSpec is your own key without another session)";
        assert_eq!(ack_error(offline), Change::Offline(offline.into()));
        for dead in [
            "blocked by recipient grants (sender lacks dm capability)",
            "payload too large: 69912 bytes > MAX_MESSAGE_BYTES=65536",
            "idempotency_key_reused: request_fingerprint_mismatch",
        ] {
            assert_eq!(ack_error(dead), Change::Dead(dead.into()));
        }
        assert_eq!(
            ack_error("something new"),
            Change::Counted("something new".into())
        );
    }

    #[test]
    fn success_duplicate_timeout_and_lost_links() {
        let done = classify(
            Step::Delivered(DeliveryOutcome::Acked {
                queued: true,
                message_id: "m1".into(),
                error: None,
                duplicate: true,
            }),
            false,
        );
        assert_eq!(done, Change::Done("m1".into()));
        assert_eq!(
            classify(Step::Delivered(DeliveryOutcome::Timeout), false),
            Change::Counted("ack_timeout".into())
        );
        let lost = |reason: &str, closing| {
            classify(
                Step::Delivered(DeliveryOutcome::NotConnected {
                    reason: reason.into(),
                }),
                closing,
            )
        };
        assert_eq!(
            lost("broker_disconnected", false),
            Change::Counted("broker_disconnected".into())
        );
        assert_eq!(
            lost("broker_disconnected", true),
            Change::Uncounted("broker_disconnected".into(), 0)
        );
        assert_eq!(
            lost("broker_not_open (reconnecting)", false),
            Change::Uncounted("broker_not_open (reconnecting)".into(), 0)
        );
        let unsent = crate::broker::msg::RATE_LIMITED_UNSENT;
        assert_eq!(
            lost(unsent, false),
            Change::Uncounted(unsent.into(), 1_000),
            "held back and cancelled: not counted, not a new refusal"
        );
        assert_eq!(
            classify(Step::Unresolved("unknown_peer"), false),
            Change::Offline("unknown_peer".into())
        );
        assert_eq!(
            classify(Step::Behind, false),
            Change::Uncounted(BEHIND_ERROR.into(), 0),
            "waiting behind an older row of the target is never counted"
        );
    }

    #[test]
    fn a_name_resolved_at_drain_time_is_recorded_inside_the_group_apply_transaction() {
        use crate::outbox::store::{
            accept_batch, claim_due, get, open, Durability, NewSend, Status,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("outbox.db"), Durability::Normal, false).unwrap();
        let send = NewSend {
            session_pubkey: None,
            client_message_id: Some("n1".into()),
            fingerprint: [1; 32],
            mesh: "m".into(),
            to: "bob".into(),
            target: None,
            priority: "next".into(),
            meta: None,
            reply_to_id: None,
            payload: b"hi".to_vec(),
        };
        accept_batch(&mut conn, &[send], 1).unwrap();
        let rows = claim_due(&mut conn, "m", 2, 8, &Default::default()).unwrap();
        assert_eq!(rows.len(), 1);
        let pk = "ab".repeat(32);
        // The drainer's shape: one transaction around several outcomes.
        let tx = conn.transaction().unwrap();
        let died = apply_one(&tx, rows[0].id, Some(&pk), Op::Done("bm".into()), 25, 3).unwrap();
        tx.commit().unwrap();
        assert_eq!(died, None);
        let row = get(&conn, rows[0].id).unwrap().unwrap();
        assert_eq!(row.status, Status::Done);
        assert_eq!(row.target.as_deref(), Some(pk.as_str()));
    }
}
