use serde_json::json;

use super::*;

#[test]
fn ids_are_43_visible_ascii_chars_and_unique() {
    let a = SessionId::generate().expect("rng");
    let b = SessionId::generate().expect("rng");
    assert_ne!(a, b);
    assert_eq!(a.as_str().len(), 43);
    assert!(a.as_str().bytes().all(|c| (0x21..=0x7e).contains(&c)));
    assert_eq!(SessionId::parse(a.as_str()), Some(a));
}

#[test]
fn only_well_formed_ids_parse() {
    for bad in
        ["", "short", &"a".repeat(44), &format!("{}=", "a".repeat(42)), &format!("{}{{", "a".repeat(42))]
    {
        assert!(SessionId::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn merge_patch_follows_rfc_7396() {
    // The examples of RFC 7396 appendix A, a representative subset.
    let check = |target: serde_json::Value, patch: serde_json::Value, expected: serde_json::Value| {
        let mut t = target;
        merge_patch(&mut t, &patch);
        assert_eq!(t, expected);
    };
    check(json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"}));
    check(json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"}));
    check(json!({"a":"b"}), json!({"a":null}), json!({}));
    check(json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]}));
    check(json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}}));
    check(json!(["a", "b"]), json!({"a":"b"}), json!({"a":"b"}));
    check(json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}}));
}

mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn session_id_parsing_never_panics(text in ".{0,64}") {
            let _ = SessionId::parse(&text);
        }

        /// RFC 7396: applying a patch twice changes nothing more (idempotence), and a patch
        /// without nulls leaves every key it names equal to the patch's value.
        #[test]
        fn merge_patch_is_idempotent(target in json(), patch in json()) {
            let mut once = target.clone();
            merge_patch(&mut once, &patch);
            let mut twice = once.clone();
            merge_patch(&mut twice, &patch);
            prop_assert_eq!(&once, &twice);
        }
    }
}
