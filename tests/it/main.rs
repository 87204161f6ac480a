//! Integration tests: real `claudemeshd` processes — dev broker, daemons — on loopback, in
//! temp dirs. One test binary; helpers in `harness`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod flood;
mod harness;
mod head;
mod late_acks;
mod pipeline;
mod reads;
mod reload;
mod runtime;
pub mod security;
mod service;
mod startup;
mod storage;

mod sessions;
