//! Unit tests of [`super`]: the SSE stream machine with a fake journal and a real channel.

use std::cell::RefCell;
use std::sync::Arc;

use actix::Actor;
use claudemesh_actors::events::{CountStreams, EventHub};
use futures_util::StreamExt;

use super::*;

fn ev(id: i64, kind: &str, mesh: &str) -> StoredEvent {
    StoredEvent {
        id,
        kind: kind.into(),
        mesh: Some(mesh.into()),
        data: format!(r#"{{"kind":"{kind}","n":{id}}}"#),
    }
}

/// A journal holding `events`; records every `(after, limit)` it was asked for.
fn journal(events: Vec<StoredEvent>, asked: Rc<RefCell<Vec<i64>>>) -> ReplaySource {
    Rc::new(move |after, limit| {
        asked.borrow_mut().push(after);
        let page: Vec<StoredEvent> = events
            .iter()
            .filter(|e| e.id > after)
            .take(limit)
            .cloned()
            .collect();
        Box::pin(async move { Ok(Replay::Events(page)) })
    })
}

fn reset(oldest_id: i64, newest_id: i64) -> ReplaySource {
    Rc::new(move |_, _| {
        Box::pin(async move {
            Ok(Replay::Reset {
                oldest_id,
                newest_id,
            })
        })
    })
}

async fn next_frame(
    s: &mut (impl Stream<Item = Result<Bytes, Infallible>> + Unpin),
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(2), s.next())
        .await
        .expect("stream stalled")
        .map(|r| String::from_utf8(r.unwrap().to_vec()).unwrap())
}

fn stream(
    rx: mpsc::Receiver<Arc<StoredEvent>>,
    filter: EventFilter,
    last: Option<i64>,
    replay: ReplaySource,
    heartbeat_ms: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin {
    Box::pin(event_stream(
        rx,
        SubscriptionGuard::new(None, 1),
        filter,
        last,
        replay,
        Duration::from_millis(heartbeat_ms),
    ))
}

#[actix_web::test]
async fn live_only_stream_opens_with_connected_and_ends_with_the_channel() {
    let (tx, rx) = mpsc::channel(8);
    let asked = Rc::new(RefCell::new(Vec::new()));
    let mut s = stream(
        rx,
        EventFilter::default(),
        None,
        journal(vec![], asked.clone()),
        60_000,
    );
    assert_eq!(next_frame(&mut s).await.unwrap(), ": connected\n\n");
    tx.send(Arc::new(ev(7, "message", "m"))).await.unwrap();
    assert_eq!(
        next_frame(&mut s).await.unwrap(),
        "id: 7\nevent: message\ndata: {\"kind\":\"message\",\"n\":7}\n\n"
    );
    drop(tx);
    assert_eq!(next_frame(&mut s).await, None);
    assert!(asked.borrow().is_empty(), "no replay without a last id");
}

#[actix_web::test]
async fn replay_then_live_without_duplicates_and_with_the_filter() {
    let (tx, rx) = mpsc::channel(8);
    // Published between subscribe and replay: 5 is in the replay too, 6 is not.
    tx.send(Arc::new(ev(5, "message", "a"))).await.unwrap();
    tx.send(Arc::new(ev(6, "message", "a"))).await.unwrap();
    let filter = EventFilter {
        kinds: Default::default(),
        mesh: Some("a".into()),
        scope: None,
    };
    let journal_events = vec![
        ev(3, "message", "a"),
        ev(4, "peer_join", "b"),
        ev(5, "message", "a"),
    ];
    let asked = Rc::new(RefCell::new(Vec::new()));
    let mut s = stream(
        rx,
        filter,
        Some(2),
        journal(journal_events, asked.clone()),
        60_000,
    );
    let mut ids = Vec::new();
    assert_eq!(next_frame(&mut s).await.unwrap(), ": connected\n\n");
    for _ in 0..3 {
        let f = next_frame(&mut s).await.unwrap();
        ids.push(f.lines().next().unwrap().to_string());
    }
    assert_eq!(ids, ["id: 3", "id: 5", "id: 6"]);
    assert_eq!(asked.borrow().as_slice(), [2]);
}

#[actix_web::test]
async fn long_replays_are_paged_in_order() {
    let (_tx, rx) = mpsc::channel(8);
    let events: Vec<StoredEvent> = (1..=1_200).map(|i| ev(i, "system", "m")).collect();
    let asked = Rc::new(RefCell::new(Vec::new()));
    let mut s = stream(
        rx,
        EventFilter::default(),
        Some(0),
        journal(events, asked.clone()),
        60_000,
    );
    next_frame(&mut s).await.unwrap();
    for want in 1..=1_200 {
        let f = next_frame(&mut s).await.unwrap();
        assert!(f.starts_with(&format!("id: {want}\n")), "{f}");
    }
    assert_eq!(asked.borrow().as_slice(), [0, 500, 1_000]);
}

#[actix_web::test]
async fn id_outside_the_journal_gets_one_reset_then_live() {
    let (tx, rx) = mpsc::channel(8);
    let mut s = stream(rx, EventFilter::default(), Some(99), reset(10, 20), 60_000);
    assert_eq!(next_frame(&mut s).await.unwrap(), ": connected\n\n");
    let r = next_frame(&mut s).await.unwrap();
    assert!(r.starts_with("event: reset\ndata: "), "{r}");
    assert!(!r.contains("id: "));
    tx.send(Arc::new(ev(21, "message", "m"))).await.unwrap();
    assert!(next_frame(&mut s).await.unwrap().starts_with("id: 21\n"));
}

#[actix_web::test]
async fn silence_is_filled_with_heartbeats() {
    let (_tx, rx) = mpsc::channel::<Arc<StoredEvent>>(8);
    let asked = Rc::new(RefCell::new(Vec::new()));
    let mut s = stream(rx, EventFilter::default(), None, journal(vec![], asked), 20);
    assert_eq!(next_frame(&mut s).await.unwrap(), ": connected\n\n");
    assert_eq!(next_frame(&mut s).await.unwrap(), HEARTBEAT);
    assert_eq!(next_frame(&mut s).await.unwrap(), HEARTBEAT);
}

#[actix_web::test]
async fn dropping_the_stream_unsubscribes_from_the_hub() {
    let hub = EventHub::new(4, 8).start();
    let sub = hub
        .send(Subscribe {
            filter: EventFilter::default(),
        })
        .await
        .unwrap()
        .unwrap();
    // Keep the subscription's channel open: only an explicit Unsubscribe can remove it.
    let _kept_open = sub.rx;
    let (_tx, rx) = mpsc::channel(1);
    let asked = Rc::new(RefCell::new(Vec::new()));
    let s = event_stream(
        rx,
        SubscriptionGuard::new(Some(hub.clone()), sub.id),
        EventFilter::default(),
        None,
        journal(vec![], asked),
        Duration::from_secs(60),
    );
    assert_eq!(hub.send(CountStreams).await.unwrap(), 1);
    drop(s);
    assert_eq!(hub.send(CountStreams).await.unwrap(), 0);
}

/// Issue 13 item 6: the journal is trimmed past the replay's cursor between two replay pages
/// (a slow replay while events pour in). The replay must end with exactly one `reset` and
/// the stream continue live without repeating an id it already sent (the reset used to set
/// the replayed-up-to mark to 0, so live events already replayed went out again).
#[actix_web::test]
async fn a_journal_trimmed_between_replay_pages_ends_the_replay_with_one_reset_and_no_repeats() {
    use claudemesh_actors::inbox::store::{append_event, open, replay_after};

    let dir = tempfile::tempdir().unwrap();
    let conn = Rc::new(RefCell::new(
        open(&dir.path().join("inbox.db"), false).unwrap(),
    ));
    let append = |conn: &Rc<RefCell<rusqlite::Connection>>, n: i64, keep: usize| {
        for _ in 0..n {
            append_event(
                &mut conn.borrow_mut(),
                "system",
                Some("m"),
                Default::default(),
                0,
                keep,
            )
            .unwrap();
        }
    };
    // 450 events before the client subscribes; 150 more after (they reach it live too).
    append(&conn, 600, 10_000);
    let (tx, rx) = mpsc::channel(1_000);
    let journaled = |id: i64| {
        Arc::new(StoredEvent {
            id,
            kind: "system".into(),
            mesh: Some("m".into()),
            data: "{}".into(),
        })
    };
    for id in 451..=600 {
        tx.send(journaled(id)).await.unwrap();
    }
    // The journal: the second page finds it trimmed far past the first page's end.
    let calls = Rc::new(RefCell::new(0));
    let source: ReplaySource = {
        let conn = conn.clone();
        let calls = calls.clone();
        Rc::new(move |after, limit| {
            *calls.borrow_mut() += 1;
            if *calls.borrow() == 2 {
                append(&conn, 2_000, 1_000);
            }
            let page = replay_after(&conn.borrow(), after, limit).map_err(Into::into);
            Box::pin(async move { page })
        })
    };
    let mut s = stream(rx, EventFilter::default(), Some(0), source, 60_000);
    for id in 2_551..=2_600 {
        tx.send(journaled(id)).await.unwrap();
    }
    drop(tx);
    let mut ids = Vec::new();
    let mut resets = 0;
    while let Some(frame) = next_frame(&mut s).await {
        if frame.starts_with("event: reset\n") {
            resets += 1;
            assert_eq!(
                ids.len(),
                500,
                "the reset ends the replay after its first page"
            );
        } else if let Some(id) = frame.strip_prefix("id: ") {
            ids.push(id.split('\n').next().unwrap().parse::<i64>().unwrap());
        }
    }
    assert_eq!(resets, 1);
    assert_eq!(*calls.borrow(), 2, "no replay after the reset");
    let want: Vec<i64> = (1..=600).chain(2_551..=2_600).collect();
    assert_eq!(ids, want, "every id once, in order");
}
