//! Integration tests: real `claudemeshd` processes — dev broker, daemons — on loopback, in
//! temp dirs. One test binary; helpers in `harness`.

mod harness;
mod runtime;
mod security;
