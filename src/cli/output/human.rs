//! Human renderings of the JSON documents the commands produce. Pure functions from JSON to
//! text (no I/O), so every command's human output is derived from exactly what `--json`
//! prints, and missing fields degrade to `-` instead of failing.

use serde_json::{json, Value};

use crate::client::SseEvent;

pub use super::mesh::{peers, sessions};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn n(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(x)) => x.to_string(),
        _ => "-".into(),
    }
}

/// Seconds as `42 s`, `5 min` or `3 h`.
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3_600),
    }
}

/// The first 16 characters of a key.
fn short(key: &str) -> &str {
    key.get(..16).unwrap_or(key)
}

/// A 64-hex pubkey shortened to its first 16 characters and `…`; anything else as is.
fn short_key(to: &str) -> String {
    if to.len() == 64 && to.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}…", &to[..16])
    } else {
        to.to_string()
    }
}

/// Columns separated by two spaces, each padded to its widest cell (the last is not padded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `status` of a running daemon (the `/v1/health` body).
pub fn status(h: &Value) -> String {
    let mut out = vec![
        format!(
            "running: pid {}, version {}, up {}",
            n(h, "pid"),
            s(h, "version"),
            h["uptime_s"]
                .as_i64()
                .map(age)
                .unwrap_or_else(|| "-".into())
        ),
        format!("socket: {}", s(h, "socket")),
        format!("tcp: {}", h["tcp"].as_str().unwrap_or("off")),
        format!("default mesh: {}", s(h, "default_mesh")),
    ];
    for m in h["meshes"].as_array().into_iter().flatten() {
        let mut line = format!("mesh {}: {}", s(m, "slug"), s(m, "broker_status"));
        if let Some(since) = m["connected_since"].as_str() {
            line.push_str(&format!(" since {since}"));
        }
        if let Some(e) = m["last_error"].as_str() {
            line.push_str(&format!(" (last error: {e})"));
        }
        if let Some(id) = m["session_id"].as_str() {
            line.push_str(&format!(", session {id}"));
        }
        let sc = &m["session_connections"];
        if sc["total"].as_u64().is_some_and(|t| t > 0) {
            line.push_str(&format!(
                "; session connections {}/{} open",
                n(sc, "open"),
                n(sc, "total")
            ));
        }
        out.push(line);
    }
    let o = &h["outbox"];
    if o.is_object() {
        out.push(format!(
            "outbox: {} pending, {} inflight, {} dead; oldest pending: {}",
            n(o, "pending"),
            n(o, "inflight"),
            n(o, "dead"),
            o["oldest_pending_age_s"]
                .as_i64()
                .map(age)
                .unwrap_or_else(|| "-".into())
        ));
    } else {
        out.push("outbox: unavailable".into());
    }
    out.push(format!("event streams: {}", n(h, "sse_streams")));
    out.join("\n")
}

/// `version`.
pub fn version(v: &Value) -> String {
    let daemon = match v["daemon_version"].as_str() {
        Some(d) => format!("daemon {d} (ipc {})", s(v, "ipc_api")),
        None => format!("daemon not running ({})", s(v, "daemon_error")),
    };
    format!("cli {}\n{daemon}", s(v, "cli_version"))
}

/// `accept-host`.
pub fn accept_host(v: &Value) -> String {
    let before = match v["previously_matched"].as_bool() {
        Some(true) => "it already matched this host",
        Some(false) => "it named another host",
        None => "there was none",
    };
    format!(
        "{} now names this host (fingerprint {}…); {before}",
        s(v, "path"),
        short(s(v, "fingerprint"))
    )
}

/// `send` through the daemon or the cold path.
pub fn send(v: &Value) -> String {
    if v["via"] == "cold_path" {
        return format!(
            "sent {} (client id {}, mesh {}; no daemon running, sent directly to the broker){}",
            s(v, "broker_message_id"),
            s(v, "client_message_id"),
            s(v, "mesh"),
            if v["duplicate"] == true {
                "; the broker had it already"
            } else {
                ""
            }
        );
    }
    if v["duplicate"] == true {
        return format!(
            "already sent as {} (client id {}); not sent again",
            s(v, "broker_message_id"),
            s(v, "client_message_id")
        );
    }
    format!("{} {}", s(v, "status"), s(v, "client_message_id"))
}

/// `inbox`: oldest of the page first.
pub fn inbox(v: &Value) -> String {
    let items: Vec<&Value> = v["items"].as_array().into_iter().flatten().collect();
    if items.is_empty() {
        return "no messages".into();
    }
    let mut lines: Vec<String> = items
        .iter()
        .rev()
        .map(|m| {
            let from = m["sender_name"]
                .as_str()
                .unwrap_or_else(|| short(s(m, "sender_pubkey")));
            let topic = m["topic"]
                .as_str()
                .map(|t| format!(" #{t}"))
                .unwrap_or_default();
            let body = m["body"].as_str().unwrap_or("(undecryptable)");
            format!(
                "{}  {}  {from}{topic}: {body}",
                s(m, "received_at"),
                s(m, "mesh")
            )
        })
        .collect();
    if let Some(before) = v["next_before"].as_i64() {
        lines.push(format!("(older messages: --before {before})"));
    }
    if let Some(n) = v["marked_seen"].as_i64().filter(|n| *n > 0) {
        lines.push(format!("(marked {n} seen)"));
    }
    lines.join("\n")
}

/// `profile`.
pub fn profile(v: &Value) -> String {
    let applied: Vec<&str> = v["applied"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut line = format!("profile set: {}", applied.join(", "));
    if v["pending"] == true {
        line.push_str(" (the broker link is down: applied when it reconnects)");
    }
    line
}

/// `outbox list`.
pub fn outbox_list(v: &Value) -> String {
    let items: Vec<&Value> = v["items"].as_array().into_iter().flatten().collect();
    if items.is_empty() {
        return "no outbox rows".into();
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "STATUS".into(),
        "TRIES".into(),
        "MESH".into(),
        "TO".into(),
        "CLIENT ID".into(),
        "ENQUEUED".into(),
        "NOTE".into(),
    ]];
    for r in items {
        let note = match (r["broker_message_id"].as_str(), r["last_error"].as_str()) {
            (Some(b), _) => format!("broker id {b}"),
            (None, Some(e)) => e.to_string(),
            _ => String::new(),
        };
        rows.push(vec![
            n(r, "id"),
            s(r, "status").to_string(),
            n(r, "attempts"),
            s(r, "mesh").to_string(),
            short_key(s(r, "to")).to_string(),
            s(r, "client_message_id").to_string(),
            s(r, "enqueued_at").to_string(),
            note,
        ]);
    }
    table(&rows)
}

/// `outbox requeue`.
pub fn outbox_requeue(v: &Value) -> String {
    format!(
        "row {} aborted; queued again as row {} (client id {})",
        n(v, "aborted_row_id"),
        n(v, "new_row_id"),
        s(v, "new_client_message_id")
    )
}

/// `down`.
pub fn down(v: &Value) -> String {
    format!("stopped (pid {})", n(v, "pid"))
}

/// `up --detach`.
pub fn detached(v: &Value) -> String {
    format!(
        "started in the background: pid {}, socket {}, log {}",
        n(v, "pid"),
        s(v, "socket"),
        s(v, "log")
    )
}

/// `install-service` / `uninstall-service`.
pub fn service(v: &Value) -> String {
    let mut out = Vec::new();
    let path = s(v, "path");
    let action = v["action"].as_str().unwrap_or("install");
    if v["dry_run"] == true {
        if let Some(content) = v["content"].as_str() {
            out.push(format!("# {path} (dry run: nothing written)"));
            out.push(content.trim_end().to_string());
        } else {
            out.push(format!("would remove {path} (dry run: nothing removed)"));
        }
    } else if action == "install" {
        let verb = if v["existed"] == true {
            "rewrote"
        } else {
            "wrote"
        };
        out.push(format!("{verb} {path}"));
    } else {
        out.push(format!("removed {path}"));
    }
    for c in v["commands"].as_array().into_iter().flatten() {
        match c["error"].as_str() {
            None => out.push(format!("ran: {}", s(c, "command"))),
            Some(e) => out.push(format!("ran: {} (failed, ignored: {e})", s(c, "command"))),
        }
    }
    if let Some(reason) = v["manager_skipped"].as_str() {
        let manual: Vec<&str> = v["manual"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !manual.is_empty() {
            out.push(format!(
                "service manager not run ({reason}); to apply it yourself: {}",
                manual.join(" && ")
            ));
        }
    }
    out.join("\n")
}

/// One event under `--json`: `{"id", "event", "data"}` with `data` parsed when it is JSON.
pub fn event_json(ev: &SseEvent) -> Value {
    let data = serde_json::from_str::<Value>(&ev.data).unwrap_or_else(|_| json!(ev.data));
    let id = ev
        .id
        .as_deref()
        .and_then(|i| i.parse::<i64>().ok())
        .map(Value::from)
        .unwrap_or(Value::Null);
    json!({"id": id, "event": ev.event, "data": data})
}

/// One event for humans: `[id] kind mesh: what happened`.
pub fn event(ev: &SseEvent) -> String {
    let d = serde_json::from_str::<Value>(&ev.data).unwrap_or(Value::Null);
    if ev.event == "reset" {
        return format!(
            "reset: the requested id is outside the daemon's journal (oldest {}, newest {}); continuing live",
            n(&d, "oldest_id"),
            n(&d, "newest_id")
        );
    }
    let head = format!(
        "[{}] {} {}",
        ev.id.as_deref().unwrap_or("-"),
        ev.event,
        s(&d, "mesh")
    );
    let what = match ev.event.as_str() {
        "message" => {
            let from = d["sender_name"]
                .as_str()
                .unwrap_or_else(|| short(s(&d, "sender_pubkey")));
            let topic = d["topic"]
                .as_str()
                .map(|t| format!(" #{t}"))
                .unwrap_or_default();
            format!(
                "from {from}{topic}: {}",
                d["body"].as_str().unwrap_or("(undecryptable)")
            )
        }
        "peer_join" | "peer_leave" => format!(
            "{} ({}){}",
            s(&d, "name"),
            short(s(&d, "pubkey")),
            if d["returned"] == true {
                " returned"
            } else {
                ""
            }
        ),
        "broker_status" => match d["last_error"].as_str() {
            Some(e) => format!("{} (last error: {e})", s(&d, "status")),
            None => s(&d, "status").to_string(),
        },
        "session_left" => format!(
            "session {} ({}) left: {}",
            s(&d, "session_id"),
            s(&d, "display_name"),
            s(&d, "reason")
        ),
        "outbox_dead" => format!(
            "row {} to {} gave up: {}",
            n(&d, "id"),
            s(&d, "to"),
            s(&d, "last_error")
        ),
        _ => ev.data.clone(),
    };
    format!("{head}: {what}")
}

#[cfg(test)]
#[path = "human_tests.rs"]
mod tests;
