//! RFC 7396 merge patch on any pair of JSON documents (the input is two JSON values in
//! a row: the target, then the patch): no panic; applying the patch twice equals
//! applying it once; every member the patch sets to null is gone and every non-object
//! member it sets is there verbatim; a non-object patch replaces the target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::session::merge_patch;

fuzz_target!(|data: &[u8]| {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let (Some(Ok(target)), Some(Ok(patch))) = (values.next(), values.next()) else {
        return;
    };
    let mut once = target;
    merge_patch(&mut once, &patch);

    let mut twice = once.clone();
    merge_patch(&mut twice, &patch);
    assert_eq!(twice, once, "a merge patch is idempotent");

    match (&patch, &once) {
        (Value::Object(members), Value::Object(result)) => {
            for (key, value) in members {
                match value {
                    Value::Null => assert!(!result.contains_key(key), "{key} was not removed"),
                    Value::Object(_) => assert!(result.get(key).is_some_and(Value::is_object)),
                    other => assert_eq!(result.get(key), Some(other)),
                }
            }
        }
        (Value::Object(_), _) => panic!("an object patch leaves an object"),
        (other, result) => assert_eq!(result, other),
    }
});
