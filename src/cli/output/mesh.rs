//! Human renderings of who is on the mesh: `peers` (grouped by member, each presence with its
//! role) and `sessions` (the agent sessions registered with this daemon). Pure functions from
//! the JSON the daemon returned; missing fields degrade to `-`.

use claudemesh_actors::time::{ms_from_iso, now_ms};
use serde_json::Value;

use super::human::{age, table};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// The first 16 characters of a key.
fn short(key: &str) -> &str {
    key.get(..16).unwrap_or(key)
}

/// What a presence is, in words: head brokers say `peerRole`; seed brokers list members only.
fn role(p: &Value) -> &str {
    match p["peerRole"].as_str() {
        Some("control-plane") => "member daemon",
        Some(other) => other,
        None => "member",
    }
}

/// `peers`: one block per member (its `memberPubkey`), the member's own presence first, then
/// its sessions; the member's name only on its first line.
pub fn peers(v: &Value) -> String {
    let peers: Vec<&Value> = v["peers"].as_array().into_iter().flatten().collect();
    let mut out = Vec::new();
    if v["stale"] == true {
        out.push(format!(
            "(cached list from {}; the broker link is down)",
            s(v, "fetched_at")
        ));
    }
    if peers.is_empty() {
        out.push("no peers online".into());
        return out.join("\n");
    }
    let mut groups: Vec<(&str, Vec<&Value>)> = Vec::new();
    for p in peers {
        let member = p["memberPubkey"]
            .as_str()
            .or(p["pubkey"].as_str())
            .unwrap_or("-");
        match groups.iter_mut().find(|(m, _)| *m == member) {
            Some((_, list)) => list.push(p),
            None => groups.push((member, vec![p])),
        }
    }
    let mut rows = vec![vec![
        "MEMBER".to_string(),
        "PRESENCE".into(),
        "ROLE".into(),
        "PUBKEY".into(),
        "STATUS".into(),
        "SUMMARY".into(),
    ]];
    let presences: usize = groups.iter().map(|(_, l)| l.len()).sum();
    let members = groups.len();
    for (_, mut list) in groups {
        // The member's own presence first (stable otherwise).
        list.sort_by_key(|p| p["peerRole"].as_str().is_some_and(|r| r != "control-plane"));
        let name = s(list[0], "displayName").to_string();
        for (i, p) in list.iter().enumerate() {
            rows.push(vec![
                if i == 0 { name.clone() } else { String::new() },
                s(p, "displayName").to_string(),
                role(p).to_string(),
                short(s(p, "pubkey")).to_string(),
                s(p, "status").to_string(),
                p["summary"].as_str().unwrap_or("").to_string(),
            ]);
        }
    }
    out.push(table(&rows));
    out.push(format!(
        "{members} member{}, {presences} presence{}",
        if members == 1 { "" } else { "s" },
        if presences == 1 { "" } else { "s" }
    ));
    out.join("\n")
}

/// `sessions`: the registered agent sessions, oldest first.
pub fn sessions(v: &Value) -> String {
    let list: Vec<&Value> = v["sessions"].as_array().into_iter().flatten().collect();
    if list.is_empty() {
        return "no sessions registered (each `claudemesh launch` registers one)".into();
    }
    let now = now_ms();
    let mut rows = vec![vec![
        "SESSION".to_string(),
        "MESH".into(),
        "NAME".into(),
        "PID".into(),
        "PRESENCE".into(),
        "PUBKEY".into(),
        "AGE".into(),
    ]];
    for x in list {
        let since = x["registered_at"]
            .as_str()
            .and_then(ms_from_iso)
            .map(|t| age(((now - t) / 1000).max(0)))
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            s(x, "session_id").to_string(),
            s(x, "mesh").to_string(),
            s(x, "display_name").to_string(),
            x["pid"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            s(x, "presence_status").to_string(),
            short(s(x, "session_pubkey")).to_string(),
            since,
        ]);
    }
    table(&rows)
}
