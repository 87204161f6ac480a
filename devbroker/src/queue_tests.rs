use super::*;
use crate::state;

fn row(id: &str, target: &str, priority: &str, created_at: i64) -> QueueRow {
    QueueRow {
        id: id.into(),
        mesh_id: "m".into(),
        sender_member_id: "s".into(),
        sender_session_pubkey: None,
        target_spec: target.into(),
        priority: priority.into(),
        nonce: "n".into(),
        ciphertext: "c".into(),
        created_at,
        client_message_id: Some(format!("cm-{id}")),
        request_fingerprint: Some(format!("fp-{id}")),
    }
}

#[test]
fn a_drain_claims_matching_rows_once_in_insertion_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = state::open(dir.path()).unwrap();
    for (id, target, priority) in [
        ("z", "bob", "next"),
        ("a", "bob", "now"),
        ("x", "carol", "now"),
        ("l", "bob", "low"),
    ] {
        insert_queue(&conn, &row(id, target, priority, 5)).unwrap();
    }
    let targets = vec!["bob".to_owned()];
    let urgent = claim_for_drain(&mut conn, "m", &targets, &["now"], 9, Claim::Deliver).unwrap();
    assert_eq!(
        urgent.iter().map(|d| d.row.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(urgent[0].sender_member_pubkey, "");
    let rest = claim_for_drain(
        &mut conn,
        "m",
        &targets,
        &["now", "next", "low"],
        9,
        Claim::Deliver,
    )
    .unwrap();
    assert_eq!(
        rest.iter().map(|d| d.row.id.as_str()).collect::<Vec<_>>(),
        ["z", "l"]
    );
    assert!(claim_for_drain(
        &mut conn,
        "m",
        &targets,
        &["now", "next", "low"],
        9,
        Claim::Deliver
    )
    .unwrap()
    .is_empty());
    assert_eq!(
        find_client_message(&conn, "m", "cm-z").unwrap(),
        Some(("z".into(), Some("fp-z".into())))
    );
    assert_eq!(find_client_message(&conn, "m", "cm-none").unwrap(), None);
}

#[test]
fn a_lease_claim_holds_a_row_until_it_expires_and_only_client_ack_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = state::open(dir.path()).unwrap();
    insert_queue(&conn, &row("r", "bob", "next", 5)).unwrap();
    insert_queue(&conn, &row("o", "carol", "next", 6)).unwrap();
    let targets = vec!["bob".to_owned()];
    let all = ["now", "next", "low"];
    let lease = Claim::Lease {
        claimer: "p1",
        claim_ms: 100,
    };
    let first = claim_for_drain(&mut conn, "m", &targets, &all, 1_000, lease).unwrap();
    assert_eq!(first.len(), 1);
    // Claimed until 1100: not drainable at 1100, not released by a sweep at 1100.
    assert!(
        claim_for_drain(&mut conn, "m", &targets, &all, 1_100, lease)
            .unwrap()
            .is_empty()
    );
    assert_eq!(release_expired_claims(&conn, 1_100).unwrap(), 0);
    let listed = list_rows(&conn).unwrap();
    assert_eq!(listed[0].claim_id.as_deref(), Some("p1"));
    assert_eq!(listed[0].claim_expires_at, Some(1_100));
    assert!(listed[0].claimed_at(1_100) && !listed[0].claimed_at(1_101));
    assert_eq!(listed[0].delivered_at, None);
    // Released by the sweep after expiry, then drainable again.
    assert_eq!(release_expired_claims(&conn, 1_101).unwrap(), 1);
    assert_eq!(list_rows(&conn).unwrap()[0].claim_expires_at, None);
    let again = claim_for_drain(&mut conn, "m", &targets, &all, 1_102, lease).unwrap();
    assert_eq!(again.len(), 1);
    // client_ack: scoped to the acker's keys; by broker id or client id; once.
    let carol = Acker {
        mesh_id: "m",
        member_pubkey: "carol",
        session_pubkey: None,
    };
    assert_eq!(client_ack(&conn, carol, None, Some("r"), 1_200).unwrap(), 0);
    let bob = Acker {
        mesh_id: "m",
        member_pubkey: "bob",
        session_pubkey: Some("bob-session"),
    };
    assert_eq!(client_ack(&conn, bob, None, None, 1_200).unwrap(), 0);
    assert_eq!(
        client_ack(&conn, bob, Some("cm-r"), None, 1_200).unwrap(),
        1
    );
    assert_eq!(client_ack(&conn, bob, None, Some("r"), 1_201).unwrap(), 0);
    assert_eq!(list_rows(&conn).unwrap()[0].delivered_at, Some(1_200));
    assert!(
        claim_for_drain(&mut conn, "m", &targets, &all, 5_000, lease)
            .unwrap()
            .is_empty()
    );
}
