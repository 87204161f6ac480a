//! Cold-path preparation and failure modes that need no broker.

use serde_json::json;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn cold_path_validates_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let keys = MemberKeys::generate();
    let config = json!({"version": 1, "meshes": [{
        "meshId": "m1", "memberId": "u1", "slug": "work", "name": "Work",
        "pubkey": keys.pubkey_hex(), "secretKey": keys.secret_hex(),
        "brokerUrl": "ws://127.0.0.1:9/ws", "joinedAt": "2026-01-01T00:00:00Z"
    }]});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let d = dir.path().to_path_buf();
    let env = move |k: &str| (k == "CLAUDEMESH_CONFIG_DIR").then(|| d.display().to_string());
    let req = |to: &str, mesh: Option<&str>| ColdRequest {
        to: to.into(),
        message: "hi".into(),
        mesh: mesh.map(str::to_string),
        ..Default::default()
    };
    let plan = prepare(req("bob", None), &env).unwrap();
    assert_eq!(plan.mesh.slug, "work");
    assert_eq!(plan.form, TargetForm::Name);
    assert_eq!(plan.fingerprint_hex.len(), 64);
    assert!(matches!(
        prepare(req("bob", Some("play")), &env),
        Err(ColdPathError::UnknownMesh { .. })
    ));
    assert!(matches!(
        prepare(req("", None), &env),
        Err(ColdPathError::Invalid { .. })
    ));
    let bad_meta = ColdRequest {
        meta: Some(json!([1])),
        ..req("bob", None)
    };
    assert_eq!(
        prepare(bad_meta, &env).err().map(|e| e.exit_code()),
        Some(2)
    );
    assert!(matches!(
        prepare(req("bob", None), &no_env),
        Err(ColdPathError::Settings(_))
    ));
}

#[test]
fn unreachable_broker_is_a_connect_failure_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let keys = MemberKeys::generate();
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = json!({"version": 1, "meshes": [{
        "meshId": "m1", "memberId": "u1", "slug": "work", "name": "Work",
        "pubkey": keys.pubkey_hex(), "secretKey": keys.secret_hex(),
        "brokerUrl": format!("ws://127.0.0.1:{port}/ws"), "joinedAt": "2026-01-01T00:00:00Z"
    }]});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let d = dir.path().to_path_buf();
    let env = move |k: &str| (k == "CLAUDEMESH_CONFIG_DIR").then(|| d.display().to_string());
    let err = send(
        ColdRequest {
            to: "*".into(),
            message: "hi".into(),
            ..Default::default()
        },
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, ColdPathError::Connect { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(!dir.path().join("daemon").exists());
}
