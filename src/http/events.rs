//! `GET /v1/events` (SPEC §7.4): the SSE stream.
//!
//! Order, which is what makes resuming gap-free: subscribe to the EventHub **first**, then
//! replay the journal after the client's last id (`Last-Event-ID` header, else
//! `?last_event_id=`), then deliver live events, skipping any id the replay already covered.
//! An id outside the journal gets one `reset` frame and the stream continues live; so does a
//! journal trimmed past the cursor between two replay pages, without repeating any id already
//! sent. `: connected` is the first frame; a heartbeat comment follows every
//! `ipc.sse_heartbeat_ms` of silence.
//! The stream ends when the hub drops the subscription (slow reader, shutdown); dropping the
//! stream unsubscribes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use claudemesh_actors::events::{EventFilter, EventHub, Subscribe, Unsubscribe};
use claudemesh_actors::handles::Handles;
use claudemesh_actors::inbox::msg::{InboxActorError, ReplayEvents};
use claudemesh_actors::inbox::store::{Replay, StoredEvent};
use futures_util::future::LocalBoxFuture;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::error::ApiError;
use super::query::EventParams;
use super::sse::{event_frame, parse_last_event_id, reset_frame, CONNECTED, HEARTBEAT};

/// Journal events fetched per replay query (bounds the stream's own buffer).
const REPLAY_PAGE: usize = 500;

/// Where replayed events come from: `(after_id, limit)` → one page.
pub type ReplaySource =
    Rc<dyn Fn(i64, usize) -> LocalBoxFuture<'static, Result<Replay, InboxActorError>>>;

/// Sends `Unsubscribe` to the hub when the stream is dropped.
pub struct SubscriptionGuard {
    hub: Option<Addr<EventHub>>,
    id: u64,
}

impl SubscriptionGuard {
    /// Guards subscription `id` of `hub` (`None`: nothing to tell, e.g. in tests).
    pub fn new(hub: Option<Addr<EventHub>>, id: u64) -> Self {
        SubscriptionGuard { hub, id }
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            // Losing this is harmless: the hub also prunes closed channels.
            hub.do_send(Unsubscribe { id: self.id });
        }
    }
}

enum Phase {
    Start,
    Replay { after: i64 },
    Live,
}

/// The per-stream state machine.
struct StreamState {
    phase: Phase,
    pending: VecDeque<Bytes>,
    rx: mpsc::Receiver<std::sync::Arc<StoredEvent>>,
    filter: EventFilter,
    replay: ReplaySource,
    /// Live events with an id at or below this were already replayed.
    replayed_up_to: i64,
    heartbeat: Interval,
    _guard: SubscriptionGuard,
}

/// Builds the SSE body: `: connected`, the replay after `last_id` (if any), then live events.
pub fn event_stream(
    rx: mpsc::Receiver<std::sync::Arc<StoredEvent>>,
    guard: SubscriptionGuard,
    filter: EventFilter,
    last_id: Option<i64>,
    replay: ReplaySource,
    heartbeat: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    // Bounded both ways: a zero period would spin, a huge one overflow the first deadline.
    let period = heartbeat.clamp(Duration::from_millis(1), Duration::from_secs(86_400));
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = StreamState {
        phase: Phase::Start,
        pending: VecDeque::new(),
        rx,
        filter,
        replay,
        replayed_up_to: last_id.unwrap_or(0),
        heartbeat: ticker,
        _guard: guard,
    };
    let last = last_id;
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(frame) = st.pending.pop_front() {
                return Some((Ok(frame), st));
            }
            match st.phase {
                Phase::Start => {
                    st.pending
                        .push_back(Bytes::from_static(CONNECTED.as_bytes()));
                    st.phase = match last {
                        Some(after) => Phase::Replay { after },
                        None => Phase::Live,
                    };
                }
                Phase::Replay { after } => match (st.replay)(after, REPLAY_PAGE).await {
                    Ok(Replay::Events(events)) => {
                        let full = events.len() >= REPLAY_PAGE;
                        let mut cursor = after;
                        for ev in events {
                            cursor = cursor.max(ev.id);
                            if st.filter.matches(&ev) {
                                st.pending.push_back(frame_of(&ev));
                            }
                        }
                        st.replayed_up_to = cursor;
                        st.phase = if full && cursor > after {
                            Phase::Replay { after: cursor }
                        } else {
                            Phase::Live
                        };
                    }
                    Ok(Replay::Reset {
                        oldest_id,
                        newest_id,
                    }) => {
                        st.pending
                            .push_back(Bytes::from(reset_frame(oldest_id, newest_id)));
                        // Before any page (the client's own id is outside the journal) nothing
                        // was sent: everything live is new. Mid-replay (the journal was trimmed
                        // past the cursor between pages) the ids up to the cursor were sent
                        // already: keep skipping them, so live events are never repeated.
                        if Some(after) == last {
                            st.replayed_up_to = 0;
                        }
                        st.phase = Phase::Live;
                    }
                    Err(e) => {
                        log::warn!("sse replay after id {after} failed: {e}; closing the stream");
                        return None;
                    }
                },
                Phase::Live => {
                    tokio::select! {
                        ev = st.rx.recv() => match ev {
                            Some(ev) if ev.id > st.replayed_up_to => st.pending.push_back(frame_of(&ev)),
                            Some(_) => {}
                            None => return None,
                        },
                        _ = st.heartbeat.tick() => {
                            st.pending.push_back(Bytes::from_static(HEARTBEAT.as_bytes()));
                        }
                    }
                }
            }
        }
    })
}

fn frame_of(ev: &StoredEvent) -> Bytes {
    Bytes::from(event_frame(ev.id, &ev.kind, &ev.data))
}

/// The client's last event id: the `Last-Event-ID` header, else the query parameter.
fn last_event_id(req: &HttpRequest, params: &EventParams) -> Result<Option<i64>, ApiError> {
    match req.headers().get("last-event-id") {
        None => Ok(params.last_event_id),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_last_event_id)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("Last-Event-ID must be a non-negative integer")),
    }
}

/// The handler.
pub async fn events(
    req: HttpRequest,
    caller: super::caller::Caller,
    handles: web::Data<Handles>,
) -> Result<HttpResponse, ApiError> {
    let params = EventParams::parse(req.query_string())?;
    let last_id = last_event_id(&req, &params)?;
    // A session sees its own view, live and replayed alike (SPEC §12).
    let filter = EventFilter {
        kinds: params.kinds,
        mesh: params.mesh,
        scope: caller.scope(),
    };
    let sub = handles
        .events
        .send(Subscribe {
            filter: filter.clone(),
        })
        .await
        .map_err(|source| ApiError::Unavailable {
            actor: "event hub",
            source,
        })?
        .map_err(|e| ApiError::TooManyStreams { max: e.max })?;
    let inbox = handles.inbox.clone();
    let replay: ReplaySource = Rc::new(move |after_id, limit| {
        let inbox = inbox.clone();
        Box::pin(async move {
            inbox
                .send(ReplayEvents { after_id, limit })
                .await
                .map_err(InboxActorError::from)?
        })
    });
    let guard = SubscriptionGuard::new(Some(handles.events.clone()), sub.id);
    let heartbeat = Duration::from_millis(handles.tuning.ipc.sse_heartbeat_ms);
    let body = event_stream(sub.rx, guard, filter, last_id, replay, heartbeat);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(body))
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
