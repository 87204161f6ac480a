//! The [`BrokerConnection`](super::BrokerConnection)'s message handlers, one file per message
//! family: `inbound` (the frame stream and what the broker sends), `send` (sends, their acks, late acks, the rate-limit pause), `peers` (peer list and
//! name resolution), `profile` (the saved profile), `link` (status, close, the redelivery
//! nudge's reattach).

mod inbound;
mod link;
mod peers;
mod profile;
mod send;
