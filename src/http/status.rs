//! Daemon status routes (SPEC §8): `GET /v1/version`, `GET /v1/health` (the full shape, or
//! only `{"ok":true}` for an unauthenticated `--public-health` request) and `GET /v1/metrics`
//! (Prometheus text, rendered by [`super::prom`]).

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use claudemesh_actors::broker::msg::{GetLinkStatus, LinkState, LinkStatus};
use claudemesh_actors::events::CountStreams;
use claudemesh_actors::handles::{DaemonInfo, Handles};
use claudemesh_actors::metrics::Metrics;
use claudemesh_actors::outbox::msg::OutboxError;
use claudemesh_actors::outbox::store::{self, Counts};
use claudemesh_actors::sessions::links::SessionConnections;
use claudemesh_actors::time::{iso_from_ms, now_ms};
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::error::ApiError;
use super::prom::{self, LinkSample, MetricsSnapshot, OutboxSample};
use super::security::Access;

/// The IPC API version.
pub const IPC_API: &str = "v1";
/// What this daemon's API offers, for clients that probe before using a feature.
pub const IPC_FEATURES: [&str; 13] = [
    "send",
    "idempotency",
    "mesh_routing",
    "inbox",
    "events",
    "events_replay",
    "peers",
    "profile",
    "outbox",
    "outbox_requeue",
    "metrics",
    "sessions",
    "inbox_read_state",
];

/// `GET /v1/version`.
pub async fn version(handles: web::Data<Handles>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "daemon_version": handles.info.version,
        "ipc_api": IPC_API,
        "ipc_features": IPC_FEATURES,
        "schema_version": handles.info.schema_version,
    }))
}

/// Every mesh's link status, in config order; a link actor that does not answer (it is
/// being restarted) shows as `reconnecting`.
async fn link_statuses(handles: &Handles) -> Vec<LinkStatus> {
    let asks = handles.meshes.iter().map(|m| m.link.send(GetLinkStatus));
    join_all(asks)
        .await
        .into_iter()
        .zip(&handles.meshes)
        .map(|(answer, mesh)| {
            answer.unwrap_or_else(|e| LinkStatus {
                slug: mesh.slug.clone(),
                broker_status: LinkState::Reconnecting,
                connected_since: None,
                last_error: Some(format!("connection actor unavailable: {e}")),
                lag_ms: None,
                reconnects: 0,
                session_id: handles.info.session_id.clone(),
            })
        })
        .collect()
}

/// The outbox counts, read on a read-only connection: kept by triggers, so this costs the same
/// at 0 and 1M rows, and never waits behind the writer (SPEC §8 "Cost").
async fn outbox_counts(handles: &Handles) -> Option<Counts> {
    let read = handles
        .outbox_reads
        .run(|c| Ok::<_, OutboxError>(store::counts(c)?));
    match read.await {
        Ok(counts) => Some(counts),
        Err(e) => {
            log::error!("health: outbox counts failed: {e}");
            None
        }
    }
}

/// Age in whole seconds of the oldest pending row.
fn oldest_pending_age_s(counts: &Counts, now: i64) -> Option<i64> {
    counts
        .oldest_pending_enqueued_at
        .map(|t| (now - t).max(0) / 1000)
}

/// The full health body.
pub fn health_body(
    info: &DaemonInfo,
    default_mesh: &str,
    links: &[LinkStatus],
    counts: Option<&Counts>,
    sse_streams: Option<usize>,
    now: i64,
) -> Value {
    let meshes: Vec<Value> = links
        .iter()
        .map(|l| {
            json!({
                "slug": l.slug,
                "broker_status": l.broker_status.as_str(),
                "connected_since": l.connected_since.map(iso_from_ms),
                "last_error": l.last_error,
                "lag_ms": l.lag_ms,
                "session_id": l.session_id,
            })
        })
        .collect();
    // The head CLI's shape: `claudemesh install` waits for one `open` here.
    let brokers: serde_json::Map<String, Value> = links
        .iter()
        .map(|l| (l.slug.clone(), l.broker_status.as_str().into()))
        .collect();
    let outbox = counts.map(|c| {
        json!({
            "pending": c.pending,
            "inflight": c.inflight,
            "dead": c.dead,
            "oldest_pending_age_s": oldest_pending_age_s(c, now),
        })
    });
    json!({
        "ok": counts.is_some(),
        "pid": info.pid,
        "version": info.version,
        "uptime_s": (now - info.started_at_ms).max(0) / 1000,
        "socket": info.socket.display().to_string(),
        "tcp": info.tcp.map(|a| a.to_string()),
        "default_mesh": default_mesh,
        "meshes": meshes,
        "brokers": brokers,
        "outbox": outbox,
        "sse_streams": sse_streams,
    })
}

/// `GET /v1/health`. Reads `Handles` itself, after the access check, so the public form
/// needs nothing from the engine.
pub async fn health(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // The guard always records the access; without it, answer the minimal form.
    let access = req
        .extensions()
        .get::<Access>()
        .copied()
        .unwrap_or(Access::PublicHealth);
    if access == Access::PublicHealth {
        return Ok(HttpResponse::Ok().json(json!({ "ok": true })));
    }
    let handles = req
        .app_data::<web::Data<Handles>>()
        .ok_or(ApiError::Misconfigured { missing: "Handles" })?;
    let (links, counts, streams, sessions) = futures_util::join!(
        link_statuses(handles),
        outbox_counts(handles),
        handles.events.send(CountStreams),
        handles.sessions.send(SessionConnections)
    );
    let mut body = health_body(
        &handles.info,
        &handles.default_mesh,
        &links,
        counts.as_ref(),
        streams.ok(),
        now_ms(),
    );
    add_session_connections(&mut body, &sessions.unwrap_or_default());
    Ok(HttpResponse::Ok().json(body))
}

/// Adds `session_connections: {open, total}` to each mesh of a health body (SPEC §12: one
/// connection per session with presence; `open` once its `session_hello` was acked).
pub fn add_session_connections(body: &mut Value, per_mesh: &[(String, usize, usize)]) {
    for m in body["meshes"].as_array_mut().into_iter().flatten() {
        let slug = m["slug"].as_str().unwrap_or_default();
        let (open, total) = per_mesh
            .iter()
            .find(|(s, _, _)| s == slug)
            .map(|(_, o, t)| (*o, *t))
            .unwrap_or((0, 0));
        m["session_connections"] = json!({ "open": open, "total": total });
    }
}

/// `GET /v1/metrics`.
pub async fn metrics(handles: web::Data<Handles>) -> HttpResponse {
    let (links, counts, streams) = futures_util::join!(
        link_statuses(&handles),
        outbox_counts(&handles),
        handles.events.send(CountStreams)
    );
    let now = now_ms();
    let snapshot = snapshot(
        &handles.metrics,
        &links,
        counts.as_ref(),
        streams.ok(),
        now,
        handles.info.started_at_ms,
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(prom::render(&snapshot))
}

/// Gathers the metrics snapshot from the counters and the actors' answers.
pub fn snapshot(
    m: &Metrics,
    links: &[LinkStatus],
    counts: Option<&Counts>,
    sse_streams: Option<usize>,
    now: i64,
    started_at_ms: i64,
) -> MetricsSnapshot {
    let g = Metrics::get;
    MetricsSnapshot {
        uptime_s: (now - started_at_ms).max(0) as f64 / 1000.0,
        counters: vec![
            (
                "sends_accepted",
                "New outbox rows accepted.",
                g(&m.sends_accepted),
            ),
            (
                "dedupe_hits",
                "Sends answered from an existing row.",
                g(&m.dedupe_hits),
            ),
            (
                "sends_delivered",
                "Rows acknowledged by a broker.",
                g(&m.sends_delivered),
            ),
            ("sends_dead", "Rows that went dead.", g(&m.sends_dead)),
            ("receives", "Inbound messages stored.", g(&m.receives)),
            (
                "receive_duplicates",
                "Inbound duplicates suppressed.",
                g(&m.receive_duplicates),
            ),
            (
                "reconnects",
                "Broker reconnect attempts, all meshes.",
                g(&m.reconnects),
            ),
            (
                "late_acks_credited",
                "Rows marked done by an ack that came after its timeout, before a re-send.",
                g(&m.late_acks_credited),
            ),
            (
                "late_acks_after_resend",
                "Acks that came after their timeout for a row already sent again.",
                g(&m.late_acks_after_resend),
            ),
            (
                "sends_behind_failure",
                "Rows sent again because an older row to their destination failed first.",
                g(&m.sends_behind_failure),
            ),
            (
                "redelivery_nudges",
                "Silent reattaches run by the redelivery nudge (head brokers).",
                g(&m.redelivery_nudges),
            ),
        ],
        links: links
            .iter()
            .map(|l| LinkSample {
                mesh: l.slug.clone(),
                state: l.broker_status.as_str(),
                reconnects: l.reconnects,
                lag_ms: l.lag_ms,
            })
            .collect(),
        outbox: counts.map(|c| OutboxSample {
            rows: vec![
                ("pending", c.pending.max(0) as u64),
                ("inflight", c.inflight.max(0) as u64),
                ("done", c.done.max(0) as u64),
                ("dead", c.dead.max(0) as u64),
                ("aborted", c.aborted.max(0) as u64),
            ],
            oldest_pending_age_s: c
                .oldest_pending_enqueued_at
                .map(|t| (now - t).max(0) as f64 / 1000.0),
        }),
        sse_streams,
        requests: m.requests(),
        latency: m.latency(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn info() -> DaemonInfo {
        DaemonInfo {
            pid: 42,
            version: "0.1.0",
            started_at_ms: 1_000,
            daemon_dir: PathBuf::from("/d"),
            socket: PathBuf::from("/d/daemon.sock"),
            tcp: None,
            schema_version: 3,
            session_id: "daemon-0123456789abcdef".into(),
        }
    }

    fn link(state: LinkState) -> LinkStatus {
        LinkStatus {
            slug: "work".into(),
            broker_status: state,
            connected_since: Some(0),
            last_error: None,
            lag_ms: Some(12),
            reconnects: 4,
            session_id: "daemon-0123456789abcdef".into(),
        }
    }

    fn counts() -> Counts {
        Counts {
            pending: 2,
            inflight: 1,
            done: 9,
            dead: 3,
            aborted: 1,
            oldest_pending_enqueued_at: Some(5_000),
        }
    }

    #[test]
    fn health_has_the_spec_shape() {
        let body = health_body(
            &info(),
            "work",
            &[link(LinkState::Open)],
            Some(&counts()),
            Some(2),
            66_500,
        );
        assert_eq!(body["ok"], true);
        assert_eq!(body["pid"], 42);
        assert_eq!(body["version"], "0.1.0");
        assert_eq!(body["uptime_s"], 65);
        assert_eq!(body["tcp"], Value::Null);
        assert_eq!(body["sse_streams"], 2);
        assert_eq!(
            body["meshes"],
            json!([{"slug":"work","broker_status":"open",
                    "connected_since":"1970-01-01T00:00:00.000Z","last_error":null,"lag_ms":12,
                    "session_id":"daemon-0123456789abcdef"}])
        );
        assert_eq!(body["brokers"], json!({"work": "open"}));
        assert_eq!(
            body["outbox"],
            json!({"pending":2,"inflight":1,"dead":3,"oldest_pending_age_s":61})
        );
    }

    #[test]
    fn health_without_outbox_answer_is_not_ok() {
        let body = health_body(&info(), "work", &[], None, None, 2_000);
        assert_eq!(body["ok"], false);
        assert_eq!(body["outbox"], Value::Null);
    }

    #[test]
    fn metrics_snapshot_reads_counters_links_and_counts() {
        let m = Metrics::default();
        Metrics::inc(&m.sends_accepted);
        m.record_request("/v1/send", 202, 0.002);
        let snap = snapshot(
            &m,
            &[link(LinkState::Reconnecting)],
            Some(&counts()),
            Some(1),
            7_000,
            1_000,
        );
        assert_eq!(snap.uptime_s, 6.0);
        assert!(snap
            .counters
            .contains(&("sends_accepted", "New outbox rows accepted.", 1)));
        assert_eq!(snap.links[0].state, "reconnecting");
        assert_eq!(snap.links[0].reconnects, 4);
        let outbox = snap.outbox.clone().unwrap();
        assert!(outbox.rows.contains(&("dead", 3)));
        assert_eq!(outbox.oldest_pending_age_s, Some(2.0));
        assert_eq!(snap.requests, vec![(("/v1/send".to_string(), 202), 1)]);
        let text = prom::render(&snap);
        assert!(text.contains("claudemeshd_sends_accepted_total 1"));
    }
}
