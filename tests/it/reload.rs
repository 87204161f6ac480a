//! SIGHUP: the configuration is re-read; new meshes connect, removed ones close, a broken
//! configuration is refused and the running one kept.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

fn hup(d: &Daemon) {
    let pid = d.child.as_ref().expect("child").id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
}

fn mesh_states(d: &Daemon) -> Vec<(String, String)> {
    d.get("/v1/health")
        .ok()
        .map(|r| r.json())
        .and_then(|h| {
            h["meshes"].as_array().map(|ms| {
                ms.iter()
                    .map(|m| {
                        (
                            m["slug"].as_str().unwrap_or("").to_string(),
                            m["broker_status"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[test]
fn sighup_attaches_a_newly_joined_mesh_and_detaches_a_removed_one() {
    let w = World::new("alice,bob", &["--no-rate-limit"]);
    let alice = Daemon::start(&w.config_dir("alice"), &[]);
    // A second mesh on a second broker; alice joins it as "carol" under the slug "second".
    let dir2 = tempfile::tempdir().expect("tempdir");
    let broker2 = Broker::start(&dir2.path().join("broker"), 0, &["--no-rate-limit"]);
    create_mesh(
        &broker2.state,
        &broker2.url,
        "carol,dave",
        &dir2.path().join("out"),
    );
    let config_path = w.config_dir("alice").join("config.json");
    let original: Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("read")).expect("json");
    let carol: Value = serde_json::from_slice(
        &std::fs::read(dir2.path().join("out/carol/config.json")).expect("read"),
    )
    .expect("json");
    let mut second = carol["meshes"][0].clone();
    second["slug"] = json!("second");
    let mut joined = original.clone();
    joined["meshes"]
        .as_array_mut()
        .expect("meshes")
        .push(second);
    std::fs::write(&config_path, joined.to_string()).expect("write");

    // One send before the reload, counted by the process.
    let r = alice.post(
        "/v1/send",
        &json!({"to": "*", "message": "before the reload"}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    hup(&alice);
    let both_open = || {
        let s = mesh_states(&alice);
        s.len() == 2 && s.iter().all(|(_, st)| st == "open")
    };
    assert!(
        wait_until(Duration::from_secs(15), both_open),
        "{}",
        alice.log()
    );

    // The new mesh carries messages.
    let dave = Daemon::start(&dir2.path().join("out/dave"), &[]);
    let r = alice.post(
        "/v1/send",
        &json!({"to": "dave", "message": "over the new mesh", "mesh": "second"}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(wait_until(Duration::from_secs(10), || dave.inbox_bodies()
        == ["over the new mesh"]));

    // Counters belong to the process: the re-attach did not reset them.
    let metrics = alice.get("/v1/metrics").expect("metrics").body;
    assert!(
        metrics.contains("claudemeshd_sends_accepted_total 2"),
        "{metrics}"
    );

    // A broken config.json is refused; the daemon keeps both meshes.
    std::fs::write(&config_path, "{ not json").expect("write");
    hup(&alice);
    std::thread::sleep(Duration::from_millis(700));
    assert!(both_open(), "{}", alice.log());
    assert!(alice.log().contains("not reloading"), "{}", alice.log());

    // Leaving the second mesh detaches it.
    std::fs::write(&config_path, original.to_string()).expect("write");
    hup(&alice);
    let one = || mesh_states(&alice) == [("dev-mesh".to_string(), "open".to_string())];
    assert!(
        wait_until(Duration::from_secs(15), one),
        "{:?}",
        mesh_states(&alice)
    );
}
