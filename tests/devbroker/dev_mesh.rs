//! `dev-mesh`: creating private claudemesh configs and extending the same mesh.

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_devbroker as devbroker;
use serde_json::{json, Value};

use crate::support::{keys_of, sorted};

#[test]
fn dev_mesh_create_writes_private_claudemesh_configs_and_extends_the_same_mesh() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));
    let url = "ws://127.0.0.1:7901/ws";
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let created = devbroker::create_mesh(&state, url, &names(&["alice", "bob"]), &out).unwrap();
    let line = serde_json::to_value(&created).unwrap();
    assert_eq!(keys_of(&line), sorted(&["mesh_id", "members"]));
    assert_eq!(
        keys_of(&line["members"][0]),
        sorted(&["name", "member_id", "pubkey", "config_dir"])
    );
    let id = &created.mesh_id;
    assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_alphanumeric()));
    let alice = &created.members[0];
    assert_eq!(
        alice.config_dir,
        std::path::absolute(out.join("alice")).unwrap()
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&alice.config_dir), 0o700);
    let file = alice.config_dir.join("config.json");
    assert_eq!(mode(&file), 0o600);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        keys_of(&config),
        sorted(&["version", "meshes", "displayName"])
    );
    assert_eq!(
        (config["version"].clone(), config["displayName"].clone()),
        (json!(1), json!("alice"))
    );
    let entry = &config["meshes"][0];
    assert_eq!(
        keys_of(entry),
        sorted(&[
            "meshId",
            "memberId",
            "slug",
            "name",
            "pubkey",
            "secretKey",
            "brokerUrl",
            "joinedAt"
        ])
    );
    assert_eq!(entry["meshId"], created.mesh_id.as_str());
    assert_eq!(entry["brokerUrl"], url);
    assert_eq!(entry["slug"], "dev-mesh");
    let keys = MemberKeys::from_hex(
        entry["pubkey"].as_str().unwrap(),
        entry["secretKey"].as_str().unwrap(),
    );
    assert_eq!(keys.unwrap().pubkey_hex(), alice.pubkey);

    let more = devbroker::create_mesh(&state, url, &names(&["carol"]), &out).unwrap();
    assert_eq!(more.mesh_id, created.mesh_id);
    let taken = devbroker::create_mesh(&state, url, &names(&["dave", "bob"]), &out).unwrap_err();
    assert!(
        taken.to_string().contains("\"bob\" already exists"),
        "{taken}"
    );
    assert!(!out.join("dave").exists());
    for bad in [vec!["../x"], vec!["a", "a"], vec![""]] {
        assert!(devbroker::create_mesh(&state, url, &names(&bad), &out).is_err());
    }
    assert!(devbroker::create_mesh(&state, "http://x/ws", &names(&["eve"]), &out).is_err());
    let revoked = devbroker::revoke_member(&state, "carol").unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(devbroker::revoke_member(&state, "zed").is_err());
}
