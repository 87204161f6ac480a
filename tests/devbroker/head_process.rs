//! `claudemeshd dev-broker --profile head` as a separate process, observed the way a daemon
//! integration test observes it: through the state directory (`presences_in`,
//! `queue_rows_in`), which mirrors the lease and the claims.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use claudemesh_actors::time::now_ms;
use claudemesh_devbroker as devbroker;
use serde_json::Value;

use crate::head_lease::{next_event, SLOW};
use crate::support::{dm, hello, join_with, wait_until, Mesh};

/// The broker process; SIGTERMed (and reaped) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn spawn(mesh: &Mesh, extra: &[&str]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_claudemeshd"))
        .args(["dev-broker", "--listen", "127.0.0.1:0", "--state"])
        .arg(mesh.state())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    (Process(child), ready["url"].as_str().unwrap().to_owned())
}

#[actix_web::test]
async fn the_head_process_mirrors_its_lease_and_claims_into_the_state_directory() {
    let mesh = Mesh::new(&["alice", "bob"]);
    let state = mesh.state();
    let (process, url) = spawn(
        &mesh,
        &[
            "--profile",
            "head",
            "--grace-ms",
            "1500",
            "--claim-ms",
            "60000",
        ],
    );
    let (alice, bob) = (mesh.member("alice"), mesh.member("bob"));
    let (mut a, _, _) = join_with(&url, hello(&alice, None, "alice-d")).await;
    let (mut b, b_ack, _) = join_with(&url, hello(&bob, None, "bob-d")).await;
    next_event(&mut a, "peer_joined", SLOW).await.unwrap();
    let presence = b_ack["presenceId"].as_str().unwrap().to_owned();
    let listed = devbroker::presences_in(&state, now_ms()).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|p| p.online && p.peer_role.as_deref() == Some("control-plane")));
    b.close().await;
    let leased = wait_until(SLOW, || async {
        devbroker::presences_in(&state, now_ms())
            .unwrap()
            .iter()
            .any(|p| p.presence_id == presence && !p.online && p.lease_remaining_ms.is_some())
    })
    .await;
    assert!(leased, "the lease never showed in the state directory");
    a.send(dm("to-leased", &bob.pubkey, "next")).await;
    let ack = a.recv_kind("ack", None).await;
    assert_eq!(ack["queued"], true);
    // The drain that claims it runs right after the ack is written.
    let claimed = wait_until(SLOW, || async {
        devbroker::queue_rows_in(&state).unwrap().iter().any(|r| {
            r.id == ack["messageId"]
                && r.claim_id.as_deref() == Some(presence.as_str())
                && r.claimed_at(now_ms())
                && r.delivered_at.is_none()
        })
    })
    .await;
    assert!(claimed, "the DM was not claimed by the leased presence");
    next_event(&mut a, "peer_left", SLOW).await.unwrap();
    let gone = wait_until(Duration::from_secs(2), || async {
        devbroker::presences_in(&state, now_ms())
            .unwrap()
            .iter()
            .all(|p| p.presence_id != presence)
    })
    .await;
    assert!(gone);
    drop(process);
    // A new broker on the same state starts with no presences.
    let (_process, _url) = spawn(&mesh, &["--profile", "head"]);
    assert!(devbroker::presences_in(&state, now_ms())
        .unwrap()
        .is_empty());
}
