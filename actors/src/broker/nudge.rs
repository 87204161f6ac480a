//! The redelivery nudge of SPEC §6, as a pure state machine the connection actor drives.
//!
//! A head broker claims each drained DM for 30 s; a DM pushed into a socket that had already
//! died keeps its claim, a sweep every 15 s only releases it, and nothing pushes it again until
//! the next trigger for that presence (BROKER-PROTOCOL §7.2). A reattach inside the claim does
//! not get it. So after a start, or after a link that ended any way other than our own clean
//! close, the next link that opens arms **one** timer of `broker.redelivery_nudge_ms`; when it
//! fires, and only against a broker that leases presences, the connection closes its socket
//! with 1000 and says hello again at once with the same session id: a silent reattach that
//! triggers the drain. The timer is counted from the moment the new link is up (not from the
//! old socket's death): DMs sent to the leased presence while we were away are claimed up to
//! that moment, so only then is "claim + sweep" certain to have passed for all of them.
//!
//! A broker leases presences (head) when its `peers_list` entries carry `peerRole`, or when a
//! `hello_ack` returns the `presenceId` of our previous link. A seed broker shows neither and
//! is never nudged: it would announce the extra reconnect to every peer.

use serde_json::Value;

/// What survives reconnects: whether a nudge is owed and what is known of the broker.
#[derive(Debug, Clone, Default)]
pub struct Nudge {
    /// A start or an unclean link end happened and no nudge has run since.
    owed: bool,
    /// The broker was recognised as leasing presences.
    leasing: bool,
    /// `presenceId` of the last `hello_ack`.
    last_presence: Option<String>,
}

impl Nudge {
    /// `owed_at_start`: this connection starts with a process start behind it.
    pub fn new(owed_at_start: bool) -> Self {
        Nudge {
            owed: owed_at_start,
            ..Nudge::default()
        }
    }

    /// A link opened with a `hello_ack` carrying `presence_id`. Returns whether to arm the
    /// nudge timer on this link.
    pub fn link_up(&mut self, presence_id: Option<&str>) -> bool {
        if let Some(now) = presence_id {
            if self.last_presence.as_deref() == Some(now) {
                self.leasing = true;
            }
            self.last_presence = Some(now.to_string());
        }
        self.owed
    }

    /// A `peers_list` arrived: entries with `peerRole` mean a head broker.
    pub fn peers_seen(&mut self, peers: &[Value]) {
        if peers.iter().any(|p| p.get("peerRole").is_some()) {
            self.leasing = true;
        }
    }

    /// A link ended; `clean` when we closed it ourselves (shutdown, or the nudge's own close).
    pub fn link_lost(&mut self, clean: bool) {
        if !clean {
            self.owed = true;
        }
    }

    /// The armed timer fired: whether to reattach now. The debt is settled either way (a seed
    /// broker is never nudged; a leasing one once).
    pub fn fire(&mut self) -> bool {
        let go = self.owed && self.leasing;
        self.owed = false;
        go
    }

    /// Whether the broker is known to lease presences.
    pub fn leasing(&self) -> bool {
        self.leasing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_start_arms_one_nudge_against_a_head_broker() {
        let mut n = Nudge::new(true);
        assert!(
            n.link_up(Some("p1")),
            "armed on the first link after a start"
        );
        n.peers_seen(&[json!({"pubkey":"a","peerRole":"control-plane"})]);
        assert!(n.fire(), "head broker: reattach");
        // The nudge's own reattach: a clean close, the same presence back.
        n.link_lost(true);
        assert!(
            !n.link_up(Some("p1")),
            "no second nudge after the nudge's reattach"
        );
        assert!(!n.fire());
    }

    #[test]
    fn a_seed_broker_is_never_nudged() {
        let mut n = Nudge::new(true);
        assert!(n.link_up(Some("p1")));
        n.peers_seen(&[json!({"pubkey":"a","displayName":"x"})]);
        assert!(!n.fire(), "no peerRole, no presence id returned: seed");
        // An unclean end and a reconnect that gets a new presence: still seed.
        n.link_lost(false);
        assert!(n.link_up(Some("p2")));
        assert!(!n.fire());
        assert!(!n.leasing());
    }

    #[test]
    fn a_returned_presence_id_marks_a_leasing_broker() {
        let mut n = Nudge::new(false);
        assert!(!n.link_up(Some("p1")), "no start, no loss: nothing owed");
        n.link_lost(false);
        assert!(n.link_up(Some("p1")), "an unclean end arms the next link");
        assert!(n.leasing(), "same presence id back: the broker leased it");
        assert!(n.fire());
    }

    #[test]
    fn a_clean_close_owes_nothing_and_a_lost_link_keeps_the_debt() {
        let mut n = Nudge::new(false);
        n.link_lost(true);
        assert!(!n.link_up(Some("p1")));
        let mut m = Nudge::new(true);
        assert!(m.link_up(None));
        // The link died before the timer fired (its timer dies with it): still owed.
        m.link_lost(false);
        assert!(m.link_up(None));
        m.peers_seen(&[json!({"peerRole":"session"})]);
        assert!(m.fire());
    }
}
