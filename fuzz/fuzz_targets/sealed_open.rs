//! The sealed-credential decoder on any bytes, with a fixed key: opening never panics
//! and never succeeds on a value this key did not seal for that context; a value it
//! sealed opens to the same bytes, and only for the session it was sealed for.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchboard::crypto::Sealer;

/// Base64 of 32 fixed bytes (0, 1, …, 31): a key for the fuzzer, not a secret.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another key, so a `v1.<key id>.` prefix can name an old key too.
const OLD_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

static SEALER: LazyLock<Sealer> =
    LazyLock::new(|| Sealer::from_config(KEY, &[OLD_KEY.to_owned()]).expect("fixed keys are valid"));

fuzz_target!(|data: &[u8]| {
    // Up to the first NUL: the context (session id); after it: the sealed value.
    let (context, sealed) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (&b""[..], data),
    };
    let context = String::from_utf8_lossy(context);
    let sealed = String::from_utf8_lossy(sealed);
    // Forging an authenticated value is out of a fuzzer's reach: anything it makes is refused.
    assert!(SEALER.open(&sealed, &context).is_err(), "a forged value opened: {sealed:?}");

    // The input as a plaintext: it round-trips, bound to its context.
    let value = SEALER.seal(data, &context).expect("sealing works");
    let opened = SEALER.open(&value, &context).expect("a sealed value opens");
    assert_eq!(opened.as_slice(), data);
    let other = format!("{context}x");
    assert!(SEALER.open(&value, &other).is_err(), "opened for another session");
});
