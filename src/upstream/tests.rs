use serde_json::json;

use super::*;

#[test]
fn credentials_map_into_templates() {
    let creds = json!({"token": "t0k", "org": {"id": 42}});
    assert_eq!(Template::parse("{credentials.token}").render(&creds).as_deref(), Some("t0k"));
    assert_eq!(Template::parse("Bearer {credentials.token}!").render(&creds).as_deref(), Some("Bearer t0k!"));
    assert_eq!(Template::parse("{credentials.org.id}").render(&creds).as_deref(), Some("42"));
    assert_eq!(Template::parse("{credentials.missing}").render(&creds), None);
    assert!(Template::parse("plain").is_constant());
    assert!(!Template::parse("{credentials.token}").is_constant());
    assert_eq!(Template::parse("{credentials.token").render(&creds).as_deref(), Some("{credentials.token"));
}
