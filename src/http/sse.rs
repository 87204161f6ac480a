//! Server-Sent Events framing for `GET /v1/events` (SPEC §7.3, §7.4): the `: connected`
//! opener, heartbeat comments, event frames (`id:`, `event:`, `data:`, blank line) and the
//! `reset` frame. Pure string building; the stream itself lives in `events`.
//!
//! Invariant: a frame never contains a bare line break inside a field, so a payload can
//! never forge a field or end a frame early (multi-line data becomes several `data:` lines,
//! which a client joins back with `\n`).

/// First bytes of every stream, written before anything else.
pub const CONNECTED: &str = ": connected\n\n";
/// Keep-alive comment.
pub const HEARTBEAT: &str = ": heartbeat\n\n";

/// One journaled event: `id: <id>\nevent: <kind>\ndata: <json>\n\n`.
pub fn event_frame(id: i64, kind: &str, data: &str) -> String {
    let mut out = format!("id: {id}\nevent: {}\n", single_line(kind));
    push_data(&mut out, data);
    out.push('\n');
    out
}

/// The `reset` marker sent when the requested id is outside the journal; it has no `id:`
/// so the client's last id stays what it was.
pub fn reset_frame(oldest_id: i64, newest_id: i64) -> String {
    let data = serde_json::json!({ "oldest_id": oldest_id, "newest_id": newest_id });
    let mut out = String::from("event: reset\n");
    push_data(&mut out, &data.to_string());
    out.push('\n');
    out
}

fn push_data(out: &mut String, data: &str) {
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
}

fn single_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Parses a `Last-Event-ID` / `last_event_id` value: a non-negative integer.
pub fn parse_last_event_id(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frame_has_id_event_data_and_a_blank_line() {
        assert_eq!(
            event_frame(42, "message", r#"{"kind":"message","body":"hi"}"#),
            "id: 42\nevent: message\ndata: {\"kind\":\"message\",\"body\":\"hi\"}\n\n"
        );
    }

    #[test]
    fn multi_line_data_cannot_end_the_frame_early() {
        let frame = event_frame(1, "system", "a\n\nid: 99\r\nb");
        assert_eq!(
            frame,
            "id: 1\nevent: system\ndata: a\ndata: \ndata: id: 99\ndata: b\n\n"
        );
        assert_eq!(frame.matches("\n\n").count(), 1);
        assert!(event_frame(1, "a\nid: 5", "{}").starts_with("id: 1\nevent: a id: 5\n"));
    }

    #[test]
    fn reset_frame_has_no_id_line() {
        for (oldest, newest) in [(5, 9), (1, 0)] {
            let frame = reset_frame(oldest, newest);
            let lines: Vec<&str> = frame.split('\n').collect();
            assert_eq!(lines.len(), 4, "{frame:?}");
            assert_eq!(lines[0], "event: reset");
            assert_eq!(&lines[2..], ["", ""]);
            let data: serde_json::Value =
                serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(
                data,
                serde_json::json!({"oldest_id": oldest, "newest_id": newest})
            );
        }
    }

    #[test]
    fn opener_and_heartbeat_are_comments() {
        assert_eq!(CONNECTED, ": connected\n\n");
        assert!(HEARTBEAT.starts_with(':') && HEARTBEAT.ends_with("\n\n"));
    }

    #[test]
    fn last_event_id_must_be_a_non_negative_integer() {
        assert_eq!(parse_last_event_id("17"), Some(17));
        assert_eq!(parse_last_event_id(" 0 "), Some(0));
        assert_eq!(parse_last_event_id("-1"), None);
        assert_eq!(parse_last_event_id("1.5"), None);
        assert_eq!(parse_last_event_id(""), None);
        assert_eq!(parse_last_event_id("99999999999999999999"), None);
    }
}
