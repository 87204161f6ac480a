//! Response parsing, chunked bodies and SSE framing, on byte strings.

use super::*;

#[test]
fn parses_plain_and_chunked_responses() {
    let r = parse_response(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
    assert_eq!((r.status, r.body.as_str()), (202, "{}"));
    let r = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n").unwrap();
    assert_eq!(r.json()["a"], 1);
    assert!(parse_response(b"garbage").is_err());
}

#[test]
fn chunked_reader_streams_lines_across_chunk_boundaries() {
    let raw = b"5\r\nid: 1\r\n6\r\n\ndata:\r\n3\r\n x\n\r\n0\r\n\r\n";
    let mut r = BufReader::new(ChunkedReader::new(&raw[..]));
    let mut lines = Vec::new();
    let mut l = String::new();
    while r.read_line(&mut l).unwrap() > 0 {
        lines.push(l.clone());
        l.clear();
    }
    assert_eq!(lines, vec!["id: 1\n", "data: x\n"]);
}

#[test]
fn sse_events_are_split_on_blank_lines_and_comments_skipped() {
    let raw = ": connected\n\nid: 7\nevent: message\ndata: {\"a\":1}\n\n: heartbeat\n\nevent: reset\ndata: x\ndata: y\n\n";
    let mut r = BufReader::new(raw.as_bytes());
    let first = next_event(&mut r).unwrap().unwrap();
    assert_eq!(
        first,
        SseEvent {
            id: Some("7".into()),
            event: "message".into(),
            data: "{\"a\":1}".into()
        }
    );
    let reset = next_event(&mut r).unwrap().unwrap();
    assert_eq!(
        (reset.id, reset.event.as_str(), reset.data.as_str()),
        (None, "reset", "x\ny")
    );
    assert_eq!(next_event(&mut r).unwrap(), None);
}

#[test]
fn chunked_reader_reports_a_truncated_chunk() {
    let mut r = ChunkedReader::new(&b"a\r\nabc"[..]);
    let mut s = Vec::new();
    assert!(r.read_to_end(&mut s).is_err());
    let mut bad = ChunkedReader::new(&b"zz\r\n"[..]);
    assert!(bad.read_to_end(&mut s).is_err());
}
