//! Prometheus text exposition (format 0.0.4) of `GET /v1/metrics` (SPEC §8): a plain
//! [`MetricsSnapshot`] gathered by the handler, rendered by [`render`]. Pure.
//!
//! Invariant: every family has one `# HELP` and one `# TYPE` line, and label values are
//! escaped (`\\`, `"`, newline), so a mesh slug or route can never break the format.

use std::fmt::Write;

/// Broker link states, in the order they are exported.
pub const LINK_STATES: [&str; 5] = ["connecting", "open", "reconnecting", "closed", "revoked"];

/// One mesh's link, as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSample {
    /// Mesh slug.
    pub mesh: String,
    /// One of [`LINK_STATES`].
    pub state: &'static str,
    /// Reconnects since start.
    pub reconnects: u64,
    /// Milliseconds since the last frame, while open.
    pub lag_ms: Option<i64>,
}

/// Outbox depth, as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxSample {
    /// `(status, rows)` pairs.
    pub rows: Vec<(&'static str, u64)>,
    /// Age of the oldest pending row, seconds.
    pub oldest_pending_age_s: Option<f64>,
}

/// Everything `/v1/metrics` shows, already read from the actors and counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Seconds since the daemon started.
    pub uptime_s: f64,
    /// `(name without prefix and suffix, help, value)` monotonic counters.
    pub counters: Vec<(&'static str, &'static str, u64)>,
    /// One entry per attached mesh.
    pub links: Vec<LinkSample>,
    /// `None` when the outbox did not answer.
    pub outbox: Option<OutboxSample>,
    /// Open SSE streams; `None` when the hub did not answer.
    pub sse_streams: Option<usize>,
    /// IPC requests by (route, status).
    pub requests: Vec<((String, u16), u64)>,
    /// Cumulative latency buckets `(le, count)` (last `None` = +Inf), sum (s), count.
    pub latency: (Vec<(Option<f64>, u64)>, f64, u64),
}

const PREFIX: &str = "claudemeshd";

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
}

/// Escapes a label value per the exposition format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the snapshot as Prometheus text.
pub fn render(s: &MetricsSnapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(out, "{PREFIX}_uptime_seconds {}", s.uptime_s);

    family(
        &mut out,
        "broker_connected",
        "gauge",
        "1 when the mesh's broker link is open.",
    );
    for l in &s.links {
        let open = u8::from(l.state == "open");
        let _ = writeln!(
            out,
            "{PREFIX}_broker_connected{{mesh=\"{}\"}} {open}",
            escape_label(&l.mesh)
        );
    }
    family(
        &mut out,
        "broker_state",
        "gauge",
        "Broker link state per mesh (1 = current).",
    );
    for l in &s.links {
        for state in LINK_STATES {
            let v = u8::from(l.state == state);
            let _ = writeln!(
                out,
                "{PREFIX}_broker_state{{mesh=\"{}\",state=\"{state}\"}} {v}",
                escape_label(&l.mesh)
            );
        }
    }
    family(
        &mut out,
        "broker_reconnects_total",
        "counter",
        "Broker reconnects per mesh.",
    );
    for l in &s.links {
        let _ = writeln!(
            out,
            "{PREFIX}_broker_reconnects_total{{mesh=\"{}\"}} {}",
            escape_label(&l.mesh),
            l.reconnects
        );
    }
    family(
        &mut out,
        "broker_lag_milliseconds",
        "gauge",
        "Time since the last broker frame.",
    );
    for l in &s.links {
        if let Some(lag) = l.lag_ms {
            let _ = writeln!(
                out,
                "{PREFIX}_broker_lag_milliseconds{{mesh=\"{}\"}} {lag}",
                escape_label(&l.mesh)
            );
        }
    }

    if let Some(outbox) = &s.outbox {
        family(&mut out, "outbox_rows", "gauge", "Outbox rows by status.");
        for (status, n) in &outbox.rows {
            let _ = writeln!(out, "{PREFIX}_outbox_rows{{status=\"{status}\"}} {n}");
        }
        family(
            &mut out,
            "outbox_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest pending outbox row (0 when none).",
        );
        let _ = writeln!(
            out,
            "{PREFIX}_outbox_oldest_pending_age_seconds {}",
            outbox.oldest_pending_age_s.unwrap_or(0.0)
        );
    }

    for (name, help, value) in &s.counters {
        family(&mut out, &format!("{name}_total"), "counter", help);
        let _ = writeln!(out, "{PREFIX}_{name}_total {value}");
    }

    if let Some(n) = s.sse_streams {
        family(&mut out, "sse_streams", "gauge", "Open SSE event streams.");
        let _ = writeln!(out, "{PREFIX}_sse_streams {n}");
    }

    family(
        &mut out,
        "ipc_requests_total",
        "counter",
        "IPC requests by route and status.",
    );
    for ((route, status), n) in &s.requests {
        let _ = writeln!(
            out,
            "{PREFIX}_ipc_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
            escape_label(route)
        );
    }

    let (buckets, sum, count) = &s.latency;
    family(
        &mut out,
        "ipc_request_duration_seconds",
        "histogram",
        "IPC request latency.",
    );
    for (le, n) in buckets {
        let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{PREFIX}_ipc_request_duration_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(out, "{PREFIX}_ipc_request_duration_seconds_sum {sum}");
    let _ = writeln!(out, "{PREFIX}_ipc_request_duration_seconds_count {count}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetricsSnapshot {
        MetricsSnapshot {
            uptime_s: 12.5,
            counters: vec![("sends_accepted", "New outbox rows.", 3)],
            links: vec![LinkSample {
                mesh: "we\"ird\\mesh\n".into(),
                state: "open",
                reconnects: 2,
                lag_ms: Some(40),
            }],
            outbox: Some(OutboxSample {
                rows: vec![("pending", 4), ("dead", 1)],
                oldest_pending_age_s: Some(7.0),
            }),
            sse_streams: Some(1),
            requests: vec![(("/v1/send".into(), 202), 5)],
            latency: (vec![(Some(0.001), 2), (None, 5)], 0.25, 5),
        }
    }

    #[test]
    fn renders_every_family_with_values() {
        let text = render(&sample());
        for line in [
            "claudemeshd_uptime_seconds 12.5",
            "claudemeshd_broker_connected{mesh=\"we\\\"ird\\\\mesh\\n\"} 1",
            "claudemeshd_broker_state{mesh=\"we\\\"ird\\\\mesh\\n\",state=\"open\"} 1",
            "claudemeshd_broker_state{mesh=\"we\\\"ird\\\\mesh\\n\",state=\"revoked\"} 0",
            "claudemeshd_broker_reconnects_total{mesh=\"we\\\"ird\\\\mesh\\n\"} 2",
            "claudemeshd_broker_lag_milliseconds{mesh=\"we\\\"ird\\\\mesh\\n\"} 40",
            "claudemeshd_outbox_rows{status=\"pending\"} 4",
            "claudemeshd_outbox_rows{status=\"dead\"} 1",
            "claudemeshd_outbox_oldest_pending_age_seconds 7",
            "claudemeshd_sends_accepted_total 3",
            "claudemeshd_sse_streams 1",
            "claudemeshd_ipc_requests_total{route=\"/v1/send\",status=\"202\"} 5",
            "claudemeshd_ipc_request_duration_seconds_bucket{le=\"0.001\"} 2",
            "claudemeshd_ipc_request_duration_seconds_bucket{le=\"+Inf\"} 5",
            "claudemeshd_ipc_request_duration_seconds_sum 0.25",
            "claudemeshd_ipc_request_duration_seconds_count 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn every_sample_line_belongs_to_a_declared_family_once() {
        let text = render(&sample());
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(
                    declared.insert(name.clone()),
                    "family {name} declared twice"
                );
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| declared.contains(*b)))
                    .unwrap_or(name);
                assert!(declared.contains(base), "undeclared sample {line:?}");
            }
        }
    }

    #[test]
    fn missing_sources_are_left_out_not_zeroed() {
        let text = render(&MetricsSnapshot {
            outbox: None,
            sse_streams: None,
            ..sample()
        });
        assert!(!text.contains("claudemeshd_outbox_rows"));
        assert!(!text.contains("claudemeshd_sse_streams"));
    }
}
