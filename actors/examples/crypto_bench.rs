//! Cost of one DM body, sealed and opened: with a fresh key exchange per message (the free
//! functions) and through [`DmBoxes`], the shared-key cache the drainer and the inbox use.
//!
//! Run: `cargo run --release -p claudemesh-actors --example crypto_bench` (a few seconds).

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use claudemesh_actors::crypto::{self, DmBoxes, MemberKeys};

const ROUNDS: u32 = 5_000;
const BODY: &[u8] = b"a short DM body, as agents send them";

/// Microseconds per call of `f` over [`ROUNDS`] calls.
fn per_call(mut f: impl FnMut() -> Result<(), Box<dyn Error>>) -> Result<f64, Box<dyn Error>> {
    let t = Instant::now();
    for _ in 0..ROUNDS {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS))
}

fn main() -> Result<(), Box<dyn Error>> {
    let (alice, bob) = (MemberKeys::generate(), MemberKeys::generate());
    let (a_hex, b_hex) = (alice.pubkey_hex(), bob.pubkey_hex());
    let sealed = crypto::seal_dm(&alice, &b_hex, BODY)?;
    let (nonce, ct) = (sealed.nonce_b64.as_str(), sealed.ciphertext_b64.as_str());
    let seal_fresh = per_call(|| {
        black_box(crypto::seal_dm(&alice, &b_hex, BODY)?);
        Ok(())
    })?;
    let open_fresh = per_call(|| {
        black_box(crypto::open_dm(&bob, &a_hex, nonce, ct)?);
        Ok(())
    })?;
    let (mut sealer, mut opener) = (DmBoxes::default(), DmBoxes::default());
    let seal_cached = per_call(|| {
        black_box(sealer.seal(&alice, &b_hex, BODY)?);
        Ok(())
    })?;
    let open_cached = per_call(|| {
        black_box(opener.open(&bob, &a_hex, nonce, ct)?);
        Ok(())
    })?;
    println!(
        "DM body of {} bytes, {ROUNDS} rounds, us per body",
        BODY.len()
    );
    println!("{:<44} {:>10} {:>10}", "", "seal", "open");
    println!(
        "{:<44} {seal_fresh:>10.1} {open_fresh:>10.1}",
        "key exchange per message (seal_dm/open_dm)"
    );
    println!(
        "{:<44} {seal_cached:>10.1} {open_cached:>10.1}",
        "shared key kept per peer (DmBoxes)"
    );
    Ok(())
}
