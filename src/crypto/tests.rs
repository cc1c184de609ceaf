use super::*;

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";

#[test]
fn sealed_value_opens_and_hides_the_plaintext() {
    let sealer = Sealer::from_config(KEY_A, &[]).expect("key");
    let sealed = sealer.seal(br#"{"token":"s3cret"}"#, "session-1").expect("seal");
    assert!(!sealed.contains("s3cret"));
    assert_eq!(sealer.open(&sealed, "session-1").expect("open").as_slice(), br#"{"token":"s3cret"}"#);
}

#[test]
fn sealed_value_is_bound_to_its_session() {
    let sealer = Sealer::from_config(KEY_A, &[]).expect("key");
    let sealed = sealer.seal(b"x", "session-1").expect("seal");
    assert!(matches!(sealer.open(&sealed, "session-2"), Err(CryptoError::Tampered)));
}

#[test]
fn rotated_key_still_opens_old_values() {
    let old = Sealer::from_config(KEY_A, &[]).expect("key");
    let sealed = old.seal(b"x", "s").expect("seal");
    let rotated = Sealer::from_config(KEY_B, &[KEY_A.to_string()]).expect("keys");
    assert_eq!(rotated.open(&sealed, "s").expect("open").as_slice(), b"x");
    let without_old = Sealer::from_config(KEY_B, &[]).expect("key");
    assert!(matches!(without_old.open(&sealed, "s"), Err(CryptoError::UnknownKey(_))));
}

#[test]
fn garbage_never_panics() {
    let sealer = Sealer::ephemeral().expect("key");
    for input in ["", "v1", "v1..", "v1.x.y", "v2.a.b", "v1.00000000.!!!", "v1.00000000.AAAA"] {
        assert!(sealer.open(input, "s").is_err(), "{input}");
    }
    assert!(matches!(Sealer::from_config("c2hvcnQ=", &[]), Err(CryptoError::BadKey)));
}

#[test]
fn mac_key_is_keyed_and_the_same_for_the_same_secret_key() {
    let a = Sealer::from_config(KEY_A, &[]).expect("key").mac_key();
    let a_again = Sealer::from_config(KEY_A, &[KEY_B.to_string()]).expect("key").mac_key();
    let b = Sealer::from_config(KEY_B, &[]).expect("key").mac_key();
    assert_eq!(a.tag(b"tok"), a_again.tag(b"tok"), "workers sharing a key agree");
    assert_ne!(a.tag(b"tok"), b.tag(b"tok"), "another key, another tag");
    assert_ne!(a.tag(b"tok"), blake3::hash(b"tok"), "never the unkeyed hash");
    assert_eq!(format!("{a:?}"), "MacKey(<redacted>)");
}
