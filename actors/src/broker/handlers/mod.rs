//! The [`BrokerConnection`](super::BrokerConnection)'s message handlers, one file per message
//! family: `send` (sends, their acks, late acks, the rate-limit pause), `peers` (peer list and
//! name resolution), `profile` (the saved profile), `link` (status, close, the redelivery
//! nudge's reattach).

mod link;
mod peers;
mod profile;
mod send;
