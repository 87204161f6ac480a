use serde_json::json;

use super::*;
use crate::peer_state::{load_peer_state, save_peer_state, PeerState};

fn member(id: &str, name: &str) -> MemberRow {
    MemberRow {
        id: id.into(),
        mesh_id: "m".into(),
        name: name.into(),
        display_name: name.into(),
        pubkey: format!("{id}-key"),
        revoked_at: None,
        peer_grants: Map::new(),
        default_groups: Vec::new(),
    }
}

#[test]
fn reopening_keeps_the_mesh_and_members_and_revocation_keeps_its_first_time() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = open(dir.path()).unwrap();
        let mesh = MeshRow {
            id: "m".into(),
            name: "dev-mesh".into(),
            slug: "dev-mesh".into(),
        };
        insert_mesh(&conn, &mesh, 1).unwrap();
        insert_member(&conn, &member("a", "alice"), 1).unwrap();
        insert_member(&conn, &member("b", "bob"), 2).unwrap();
    }
    let conn = open(dir.path()).unwrap();
    assert_eq!(mesh(&conn).unwrap().unwrap().id, "m");
    assert_eq!(members(&conn, "m").unwrap().len(), 2);
    assert_eq!(
        revoke_member(&conn, "m", "bob", 10).unwrap().revoked_at,
        Some(10)
    );
    assert_eq!(
        revoke_member(&conn, "m", "bob", 20).unwrap().revoked_at,
        Some(10)
    );
    assert_eq!(revoked_member_ids(&conn).unwrap(), ["b"]);
    assert!(matches!(
        revoke_member(&conn, "m", "zed", 1),
        Err(DevBrokerError::UnknownMember { .. })
    ));
    let found = members_by_pubkey(&conn, "m", "a-key").unwrap();
    assert_eq!(found.len(), 1);
    assert!(members_by_pubkey(&conn, "m", "A-KEY").unwrap().is_empty());
}

#[test]
fn grants_default_to_allowed_and_an_empty_list_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path()).unwrap();
    let mesh = MeshRow {
        id: "m".into(),
        name: "dev-mesh".into(),
        slug: "dev-mesh".into(),
    };
    insert_mesh(&conn, &mesh, 1).unwrap();
    insert_member(&conn, &member("a", "alice"), 1).unwrap();
    let mut grants = Map::new();
    grants.insert("eve".into(), json!([]));
    grants.insert("bob".into(), json!(["read", "dm"]));
    set_peer_grants(&conn, "a", &grants).unwrap();
    let alice = members(&conn, "m").unwrap().remove(0);
    assert_eq!(alice.grants("carol", "dm"), None);
    assert_eq!(alice.grants("eve", "dm"), Some(false));
    assert_eq!(alice.grants("bob", "dm"), Some(true));
    assert_eq!(alice.grants("bob", "broadcast"), Some(false));
}

#[test]
fn peer_state_round_trips_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path()).unwrap();
    assert_eq!(load_peer_state(&conn, "m", "a").unwrap(), None);
    let mut saved = PeerState {
        groups: vec![Group {
            name: "ops".into(),
            role: Some("lead".into()),
        }],
        summary: "busy".into(),
        visible: false,
        profile: json!({"title": "t"}).as_object().unwrap().clone(),
        stats: json!({"messagesIn": 3}).as_object().unwrap().clone(),
        last_seen_at: 42,
    };
    save_peer_state(&conn, "m", "a", &saved).unwrap();
    assert_eq!(
        load_peer_state(&conn, "m", "a").unwrap(),
        Some(saved.clone())
    );
    saved.visible = true;
    save_peer_state(&conn, "m", "a", &saved).unwrap();
    assert!(load_peer_state(&conn, "m", "a").unwrap().unwrap().visible);
}
