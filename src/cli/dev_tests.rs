use clap::{CommandFactory, Parser};

use super::*;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(clap::Subcommand, Debug)]
enum Top {
    DevMesh(DevMeshArgs),
    DevBroker(DevBrokerArgs),
}

fn parse(line: &str) -> Top {
    Cli::try_parse_from(line.split_whitespace()).unwrap().cmd
}

#[test]
fn the_spec_command_lines_parse_with_their_defaults() {
    Cli::command().debug_assert();
    let Top::DevMesh(DevMeshArgs {
        cmd:
            DevMeshCmd::Create {
                state,
                broker_url,
                members,
                out,
            },
    }) = parse(
        "x dev-mesh create --state S --broker-url ws://127.0.0.1:9/ws --members alice,bob --out O",
    )
    else {
        panic!("not create");
    };
    assert_eq!((state, out), (PathBuf::from("S"), PathBuf::from("O")));
    assert_eq!(broker_url, "ws://127.0.0.1:9/ws");
    assert_eq!(members, ["alice", "bob"]);
    let Top::DevMesh(DevMeshArgs {
        cmd: DevMeshCmd::Revoke { member, .. },
    }) = parse("x dev-mesh revoke --state S --member bob")
    else {
        panic!("not revoke");
    };
    assert_eq!(member, "bob");
    let Top::DevBroker(defaults) = parse("x dev-broker --state S") else {
        panic!("not dev-broker");
    };
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:0");
    assert!(!defaults.no_rate_limit && !defaults.dedupe);
    assert_eq!(
        (defaults.ping_interval_ms, defaults.stale_after_ms),
        (30_000, None)
    );
    let Top::DevBroker(all) = parse(
        "x dev-broker --state S --listen 127.0.0.1:7 --no-rate-limit --dedupe \
         --ping-interval-ms 100 --stale-after-ms 75000",
    ) else {
        panic!("not dev-broker");
    };
    assert_eq!(all.listen.port(), 7);
    assert!(all.no_rate_limit && all.dedupe);
    assert_eq!(
        (all.ping_interval_ms, all.stale_after_ms),
        (100, Some(75_000))
    );
    let seed = broker_options(all);
    assert_eq!(seed.profile, Profile::Seed);
}

#[test]
fn the_head_profile_and_its_timings_parse_with_the_spec_defaults() {
    let Top::DevBroker(seed) = parse("x dev-broker --state S") else {
        panic!("not dev-broker");
    };
    assert_eq!(seed.profile, Profile::Seed);
    let seed = broker_options(seed);
    assert_eq!((seed.profile, seed.stale_after_ms), (Profile::Seed, None));
    let Top::DevBroker(head) = parse("x dev-broker --state S --profile head") else {
        panic!("not dev-broker");
    };
    assert_eq!(
        (head.grace_ms, head.claim_ms, head.sweep_ms),
        (90_000, 30_000, 15_000)
    );
    let head = broker_options(head);
    assert_eq!(
        (head.profile, head.stale_after_ms),
        (Profile::Head, Some(75_000))
    );
    let Top::DevBroker(short) = parse(
        "x dev-broker --state S --profile head --grace-ms 3000 --claim-ms 2000 --sweep-ms 1000 \
         --stale-after-ms 500",
    ) else {
        panic!("not dev-broker");
    };
    let short = broker_options(short);
    assert_eq!(
        (
            short.grace_ms,
            short.claim_ms,
            short.sweep_ms,
            short.stale_after_ms
        ),
        (3_000, 2_000, 1_000, Some(500))
    );
    assert!(Cli::try_parse_from(["x", "dev-broker", "--state", "S", "--profile", "tip"]).is_err());
}

#[test]
fn dev_mesh_exit_codes_are_zero_on_success_and_one_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let create = |names: &str| DevMeshArgs {
        cmd: DevMeshCmd::Create {
            state: state.clone(),
            broker_url: "ws://127.0.0.1:9/ws".into(),
            members: names.split(',').map(str::to_owned).collect(),
            out: out.clone(),
        },
    };
    assert_eq!(run_dev_mesh(create("alice, bob")), 0);
    assert!(out.join("bob").join("config.json").is_file());
    assert_eq!(run_dev_mesh(create("alice")), 1);
    let revoke = |member: &str| DevMeshArgs {
        cmd: DevMeshCmd::Revoke {
            state: state.clone(),
            member: member.into(),
        },
    };
    assert_eq!(run_dev_mesh(revoke("bob")), 0);
    assert_eq!(run_dev_mesh(revoke("nobody")), 1);
}

#[actix_web::test]
async fn dev_broker_prints_the_ready_line_and_exits_zero_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let Top::DevBroker(args) = parse(&format!("x dev-broker --state {}", state.display())) else {
        panic!("not dev-broker");
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut line = String::new();
    let serving = serve(args, |l| line = l.to_owned(), async {
        let _ = rx.await;
    });
    let (code, ()) = tokio::join!(serving, async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = tx.send(());
    });
    assert_eq!(code, 0);
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["msg"], "dev_broker_started");
    let url = ready["url"].as_str().unwrap();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws"),
        "{url}"
    );
    assert_ne!(url, "ws://127.0.0.1:0/ws");
}
