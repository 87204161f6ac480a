//! Commands that are clients of the daemon's HTTP API: `send` (with the cold-path fallback),
//! `inbox`, `peers`, `sessions`, `profile`, `outbox list|requeue`, `events`.

use std::time::Duration;

use claudemesh_actors::{files, procs};
use serde_json::{json, Map, Value};

use super::args::{
    EventsArgs, InboxArgs, OutboxCmd, OutboxListArgs, OutboxRequeueArgs, PeersArgs, ProfileArgs,
    SendArgs,
};
use super::error::CliError;
use super::names::Names;
use super::output::{self, human, Report};
use super::{call, env, query, report, Ctx};
use crate::client::{self, ClientError};
use crate::coldpath::{self, ColdRequest};
use crate::settings::Dirs;

/// An `events` stream is considered dead after this long without a byte (the daemon sends a
/// heartbeat every 15 s).
const EVENTS_IDLE: Duration = Duration::from_secs(45);

/// `--meta` as a JSON object.
fn parse_meta(raw: Option<&str>) -> Result<Option<Value>, CliError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        Ok(_) => Err(CliError::Usage {
            flag: "--meta",
            detail: "must be a JSON object, e.g. '{\"ticket\":42}'".into(),
        }),
        Err(e) => Err(CliError::Usage {
            flag: "--meta",
            detail: format!("not valid JSON: {e}"),
        }),
    }
}

/// Whether a daemon process seems to exist (socket answering, or a live pid in daemon.pid);
/// the cold path is never taken around one.
fn daemon_pid_alive(dirs: &Dirs) -> Option<u32> {
    files::read_pid_file(&dirs.pid_file())
        .filter(|pid| procs::pid_owner(*pid) == procs::PidOwner::Daemon)
}

/// `send`.
pub fn send(ctx: &Ctx, args: SendArgs) -> Result<Report, CliError> {
    let meta = parse_meta(args.meta.as_deref())?;
    let dirs = ctx.dirs()?;
    let mut body = json!({"to": args.to, "message": args.message});
    for (k, v) in [
        ("priority", args.priority.clone().map(Value::from)),
        ("meta", meta.clone()),
        ("reply_to_id", args.reply_to.clone().map(Value::from)),
        (
            "client_message_id",
            args.idempotency_key.clone().map(Value::from),
        ),
        ("mesh", args.mesh.clone().map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let attempt = ctx
        .target(&dirs)
        .and_then(|t| call(&t, "send", "POST", "/v1/send", Some(&body)));
    let unreachable = match attempt {
        Ok((_, mut v)) => {
            v["via"] = "daemon".into();
            return Ok(report(v, human::send));
        }
        Err(CliError::Api {
            status: 404, body, ..
        }) if body["error"] == "unknown_peer" => {
            let ours = own_pubkeys(&dirs);
            let online = ctx
                .target(&dirs)
                .map(|t| online_names(&t, args.mesh.as_deref(), &ours))
                .unwrap_or_default();
            return Err(CliError::UnknownPeer {
                name: args.to,
                online,
            });
        }
        Err(
            e @ (CliError::Client(ClientError::Unreachable { .. }) | CliError::NoTcpPort { .. }),
        ) => e,
        Err(e) => return Err(e),
    };
    if args.no_cold_path {
        return Err(unreachable);
    }
    if files::socket_answers(&dirs.socket()) {
        // `--tcp` failed but the socket answers: a daemon runs; do not go around it.
        return Err(unreachable);
    }
    if let Some(pid) = daemon_pid_alive(&dirs) {
        return Err(CliError::DaemonUnresponsive {
            pid,
            socket: dirs.socket(),
            reason: unreachable.to_string(),
        });
    }
    let sent = coldpath::send(
        ColdRequest {
            to: args.to,
            message: args.message,
            priority: args.priority,
            meta,
            reply_to_id: args.reply_to,
            client_message_id: args.idempotency_key,
            mesh: args.mesh,
        },
        &env,
    )?;
    let v = json!({
        "client_message_id": sent.client_message_id,
        "broker_message_id": sent.broker_message_id,
        "status": "sent",
        "duplicate": sent.duplicate,
        "via": "cold_path",
        "mesh": sent.mesh,
        "target": sent.target,
        "pushes_ignored": sent.pushes_ignored,
    });
    let mut r = report(v, human::send);
    if sent.pushes_ignored > 0 {
        r = r.warn(format!(
            "{} queued message(s) for this member reached the one-shot connection and were not stored; run `claudemeshd up` to receive messages",
            sent.pushes_ignored
        ));
    }
    Ok(r)
}

/// Our member pubkeys (from `config.json`; empty if it cannot be read), to leave ourselves out
/// of "who is online".
fn own_pubkeys(dirs: &Dirs) -> Vec<String> {
    let path = dirs.config_json();
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| claudemesh_actors::settings::parse_config_json(&text, &path).ok())
        .map(|c| c.meshes.into_iter().map(|m| m.pubkey).collect())
        .unwrap_or_default()
}

/// Display names of the other peers online on `mesh` (the daemon's default when `None`; our
/// own presences, whose `memberPubkey` is one of `ours`, left out), sorted, each once; empty
/// when the list cannot be fetched.
fn online_names(target: &super::Target, mesh: Option<&str>, ours: &[String]) -> Vec<String> {
    let q = query(&[("mesh", mesh.map(str::to_string))]);
    let Ok((_, v)) = call(target, "peers", "GET", &format!("/v1/peers{q}"), None) else {
        return Vec::new();
    };
    let mut names: Vec<String> = v["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            let member = p["memberPubkey"].as_str().or(p["pubkey"].as_str());
            !member.is_some_and(|m| ours.iter().any(|o| o == m))
        })
        .filter_map(|p| p["displayName"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `inbox`.
pub fn inbox(ctx: &Ctx, args: InboxArgs) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs)?;
    let q = query(&[
        ("since", args.since),
        ("topic", args.topic),
        ("from", args.from),
        ("mesh", args.mesh),
        ("limit", args.limit.map(|n| n.to_string())),
        ("before", args.before.map(|n| n.to_string())),
        ("unread_only", args.unread.then(|| "true".to_string())),
        ("mark_seen", args.mark_seen.then(|| "true".to_string())),
    ]);
    let (_, v) = call(&target, "inbox", "GET", &format!("/v1/inbox{q}"), None)?;
    if ctx.json {
        return Ok(report(v, human::inbox));
    }
    let mut shown = v.clone();
    let mut names = Names::new(&target);
    for item in shown["items"].as_array_mut().into_iter().flatten() {
        names.fill(item);
    }
    Ok(Report::new(v, human::inbox(&shown)))
}

/// `peers`.
pub fn peers(ctx: &Ctx, args: PeersArgs) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs)?;
    let q = query(&[("mesh", args.mesh)]);
    let (_, v) = call(&target, "peers", "GET", &format!("/v1/peers{q}"), None)?;
    Ok(report(v, human::peers))
}

/// `sessions`.
pub fn sessions(ctx: &Ctx) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs)?;
    let (_, v) = call(&target, "sessions", "GET", "/v1/sessions", None)?;
    Ok(report(v, human::sessions))
}

/// `profile`.
pub fn profile(ctx: &Ctx, args: ProfileArgs) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs)?;
    let mut body = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.to_string(), v);
        }
    };
    put("summary", args.summary.map(Value::from));
    put("status", args.status.map(Value::from));
    put("visible", args.visible.map(Value::from));
    put("avatar", args.avatar.map(Value::from));
    put("title", args.title.map(Value::from));
    put("bio", args.bio.map(Value::from));
    put(
        "capabilities",
        (!args.capabilities.is_empty()).then(|| Value::from(args.capabilities)),
    );
    put("mesh", args.mesh.map(Value::from));
    let (_, v) = call(
        &target,
        "profile",
        "POST",
        "/v1/profile",
        Some(&Value::Object(body)),
    )?;
    Ok(report(v, human::profile))
}

/// `outbox list|requeue`.
pub fn outbox(ctx: &Ctx, cmd: OutboxCmd) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs)?;
    match cmd {
        OutboxCmd::List(OutboxListArgs { filter, limit }) => {
            let status = [
                (filter.pending, "pending"),
                (filter.inflight, "inflight"),
                (filter.done, "done"),
                (filter.failed, "dead"),
                (filter.aborted, "aborted"),
            ]
            .into_iter()
            .find(|(on, _)| *on)
            .map(|(_, s)| s.to_string());
            let q = query(&[("status", status), ("limit", limit.map(|n| n.to_string()))]);
            let (_, v) = call(
                &target,
                "outbox list",
                "GET",
                &format!("/v1/outbox{q}"),
                None,
            )?;
            Ok(report(v, human::outbox_list))
        }
        OutboxCmd::Requeue(OutboxRequeueArgs { id, new_client_id }) => {
            let mut body = json!({ "id": id });
            if let Some(c) = new_client_id {
                body["new_client_message_id"] = c.into();
            }
            let (_, v) = call(
                &target,
                "outbox requeue",
                "POST",
                "/v1/outbox/requeue",
                Some(&body),
            )?;
            Ok(report(v, human::outbox_requeue))
        }
    }
}

/// `events`: streams until interrupted, the daemon closes the stream, or stdout goes away.
pub fn events(ctx: &Ctx, args: EventsArgs) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs)?;
    let q = query(&[
        (
            "kinds",
            (!args.kinds.is_empty()).then(|| args.kinds.join(",")),
        ),
        ("mesh", args.mesh),
    ]);
    let last = args.last_event_id.map(|id| id.to_string());
    let headers: Vec<(&str, &str)> = last
        .as_deref()
        .map(|id| vec![("Last-Event-ID", id)])
        .unwrap_or_default();
    let stream = client::open_stream(
        &target.endpoint(),
        &format!("/v1/events{q}"),
        &headers,
        EVENTS_IDLE,
    )?;
    if stream.status != 200 {
        let status = stream.status;
        let text = stream.into_string();
        let body =
            serde_json::from_str::<Value>(&text).unwrap_or_else(|_| json!({ "raw": text.trim() }));
        return Err(CliError::Api {
            what: "events",
            status,
            body,
        });
    }
    let mut body = stream.body;
    let mut names = Names::new(&target);
    loop {
        let ev = client::next_event(&mut *body).map_err(|source| {
            CliError::Client(ClientError::Io {
                target: format!("{} (event stream)", target_name(&target)),
                source,
            })
        })?;
        let Some(mut ev) = ev else {
            return Err(CliError::StreamEnded {
                detail: "the daemon closed the connection (it is shutting down?); resume with --last-event-id".into(),
            });
        };
        if !ctx.json && ev.event == "message" {
            if let Ok(mut data) = serde_json::from_str::<Value>(&ev.data) {
                names.fill(&mut data);
                ev.data = data.to_string();
            }
        }
        if output::event(ctx.json, &ev).is_err() {
            // Whoever read our output is gone (`| head`): a normal end.
            return Ok(Report::silent());
        }
    }
}

fn target_name(t: &super::Target) -> String {
    t.endpoint().target()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_must_be_a_json_object() {
        assert_eq!(parse_meta(None).unwrap(), None);
        assert_eq!(
            parse_meta(Some(r#"{"a":1}"#)).unwrap(),
            Some(json!({"a": 1}))
        );
        for bad in ["[1]", "3", "{nope"] {
            let e = parse_meta(Some(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }
}
