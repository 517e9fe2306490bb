//! Any bytes arriving on the quorum port (votes, releases, challenges, the
//! tickles' connection lists) must give a message or a reason it was
//! rejected, never a panic, with bounded work. Most fuzzed bytes fail the
//! HMAC, so half the inputs are sealed with the test key first: the
//! decoder behind the MAC sees arbitrary authentic bytes too.
#![no_main]

use ha_daemon::quorum::wire::{self, Key, MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(b"fuzzing-key-0123456789");
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let datagram = if sel & 1 == 0 {
        body.to_vec()
    } else {
        // Authentic: magic, the fuzzed body as the envelope, a valid tag.
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(body);
        let tag = wire::sign(&key, &d);
        d.extend_from_slice(&tag);
        d
    };
    let started = std::time::Instant::now();
    if let Ok(env) = wire::open(&key, &datagram) {
        // What decodes re-seals to something that opens to the same.
        let again = wire::seal(&key, &env);
        assert_eq!(wire::open(&key, &again).as_ref(), Ok(&env));
    }
    // Bounded work: a datagram is at most ~2 KB; decoding it takes far
    // under a millisecond (a generous bound for sanitizer builds).
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
});
