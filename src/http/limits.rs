//! Request limits of the local API (SPEC §9): the in-flight request cap ([`InflightGauge`],
//! 429 `daemon_busy` past it) and the body size caps ([`read_body`], 413 past them).
//!
//! Invariant: a permit is released when it is dropped, so a cancelled or panicking request
//! can never leak a slot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;

use super::error::ApiError;

/// Counts requests being served. Share one gauge across every worker of the IPC server
/// (register it as `web::Data<InflightGauge>`); without it each worker counts on its own.
#[derive(Debug, Default)]
pub struct InflightGauge {
    /// Requests currently holding a permit.
    current: AtomicUsize,
}

/// One slot of an [`InflightGauge`], released on drop.
#[derive(Debug)]
pub struct InflightPermit {
    gauge: Arc<InflightGauge>,
}

impl InflightGauge {
    /// Takes a slot if fewer than `max` are taken.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<InflightPermit> {
        self.current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InflightPermit {
                gauge: Arc::clone(self),
            })
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.gauge.current.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The body limit of a route: `send_limit` for `POST /v1/send`, `other_limit` elsewhere.
pub fn body_limit_for(path: &str, send_limit: usize, other_limit: usize) -> usize {
    if path == "/v1/send" {
        send_limit
    } else {
        other_limit
    }
}

/// True when a declared `Content-Length` already exceeds `limit` (checked before reading).
pub fn declared_length_exceeds(content_length: Option<&str>, limit: usize) -> bool {
    content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// Reads the whole body, failing with 413 as soon as it grows past `limit` bytes.
pub async fn read_body(payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    read_body_within(payload, limit, BODY_TIMEOUT).await
}

/// How long a client may take to send its whole body: a trickling client must not hold an
/// in-flight slot forever (SPEC §9, slow clients time out).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`read_body`] with an explicit deadline → 408 `request_timeout` when it passes.
pub async fn read_body_within(
    mut payload: Payload,
    limit: usize,
    within: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let read = async move {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::invalid(format!("could not read body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(ApiError::RequestTimeout {
            secs: within.as_secs(),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_refuses_past_max_and_frees_on_drop() {
        let gauge = Arc::new(InflightGauge::default());
        let a = gauge.try_acquire(2).unwrap();
        let b = gauge.try_acquire(2).unwrap();
        assert!(gauge.try_acquire(2).is_none());
        assert_eq!(gauge.current(), 2);
        drop(a);
        let c = gauge.try_acquire(2);
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(gauge.current(), 0);
    }

    #[test]
    fn send_route_gets_the_larger_limit() {
        assert_eq!(body_limit_for("/v1/send", 262_144, 16_384), 262_144);
        assert_eq!(body_limit_for("/v1/profile", 262_144, 16_384), 16_384);
    }

    #[test]
    fn declared_length_is_compared_to_the_limit() {
        assert!(declared_length_exceeds(Some("16385"), 16_384));
        assert!(!declared_length_exceeds(Some("16384"), 16_384));
        assert!(!declared_length_exceeds(None, 16_384));
        assert!(!declared_length_exceeds(Some("abc"), 16_384));
    }

    #[actix_web::test]
    async fn read_body_stops_at_the_limit() {
        use actix_web::test::TestRequest;
        use actix_web::FromRequest;

        let (req, mut pl) = TestRequest::default()
            .set_payload(vec![b'x'; 100])
            .to_http_parts();
        let payload = Payload::from_request(&req, &mut pl).await.unwrap();
        assert!(matches!(
            read_body(payload, 99).await,
            Err(ApiError::PayloadTooLarge { limit_bytes: 99 })
        ));
        let (req, mut pl) = TestRequest::default()
            .set_payload(vec![b'x'; 100])
            .to_http_parts();
        let payload = Payload::from_request(&req, &mut pl).await.unwrap();
        assert_eq!(read_body(payload, 100).await.unwrap().len(), 100);
    }
}
