//! The dev broker driven over real WebSockets on 127.0.0.1 (awc client): the path rule, hello
//! validation, events, routing, the error strings, the controls a test needs, `dev-mesh`, and a
//! fidelity replay of the recorded real-broker sessions (`tests/fixtures/wire/seed-broker*`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controls;
mod dedupe;
mod dev_mesh;
mod events;
mod fidelity;
mod head_claims;
mod head_lease;
mod head_process;
mod head_session;
mod hello;
mod path_and_sizes;
mod peers_and_profile;
mod send;
mod support;
