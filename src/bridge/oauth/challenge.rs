//! PURE. `WWW-Authenticate` parsing (RFC 9110 §11.6.1): the `Bearer` challenge's
//! parameters the MCP authorization spec uses (`resource_metadata` from RFC 9728,
//! `scope`, `error` from RFC 6750). No I/O.

/// The parameters of a `Bearer` challenge (names lower-cased, values unquoted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    /// RFC 9728 §5.1: where the protected resource metadata is.
    pub(crate) resource_metadata: Option<String>,
    /// Space-separated scopes the current request needs.
    pub(crate) scope: Option<String>,
    /// RFC 6750 §3.1 error code (`invalid_token`, `insufficient_scope`, …).
    pub(crate) error: Option<String>,
}

impl BearerChallenge {
    /// The challenged scopes, split on spaces.
    pub(crate) fn scopes(&self) -> Vec<String> {
        self.scope.as_deref().map(split_scopes).unwrap_or_default()
    }
}

/// Splits a space-separated scope string, dropping empty items.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_ascii_whitespace().map(str::to_owned).collect()
}

/// The first `Bearer` challenge among the header values, if any. Values that do not
/// parse are skipped; nothing here panics on any input.
pub(crate) fn bearer<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<BearerChallenge> {
    for value in values {
        for (scheme, params) in parse(value) {
            if !scheme.eq_ignore_ascii_case("bearer") {
                continue;
            }
            let mut challenge = BearerChallenge::default();
            for (name, value) in params {
                let slot = match name.as_str() {
                    "resource_metadata" => &mut challenge.resource_metadata,
                    "scope" => &mut challenge.scope,
                    "error" => &mut challenge.error,
                    _ => continue,
                };
                if slot.is_none() {
                    *slot = Some(value);
                }
            }
            return Some(challenge);
        }
    }
    None
}

/// Every challenge in one header value: `(scheme, [(name, value)])`. A token68
/// (`Basic abc==`) is skipped.
pub(crate) fn parse(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut lexer = Lexer { s: header.as_bytes(), i: 0 };
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    loop {
        lexer.skip_separators();
        let Some(scheme) = lexer.token() else {
            if lexer.at_end() {
                return out;
            }
            lexer.i += 1; // junk byte: skip it
            continue;
        };
        let mut params = Vec::new();
        loop {
            lexer.skip_spaces();
            let mark = lexer.i;
            let Some(name) = lexer.token() else {
                // token68 or junk: skip to the next comma
                lexer.skip_item();
                if lexer.at_end() {
                    break;
                }
                lexer.i += 1;
                continue;
            };
            lexer.skip_spaces();
            if lexer.peek() != Some(b'=') {
                // a bare token: the next challenge's scheme
                lexer.i = mark;
                break;
            }
            lexer.i += 1;
            lexer.skip_spaces();
            let value = if lexer.peek() == Some(b'"') {
                lexer.quoted()
            } else if matches!(lexer.peek(), Some(b'=') | Some(b',') | None) {
                // token68 ending in '=' (`Basic YWxhZGRpbg==`): not a parameter
                lexer.skip_item();
                None
            } else {
                lexer.token()
            };
            if let Some(value) = value {
                params.push((name.to_ascii_lowercase(), value));
            }
            lexer.skip_spaces();
            match lexer.peek() {
                Some(b',') => {
                    lexer.i += 1;
                }
                None => break,
                Some(_) => {
                    // junk after a value: skip to the next comma
                    lexer.skip_item();
                }
            }
        }
        out.push((scheme, params));
        if lexer.at_end() {
            return out;
        }
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// To the next comma outside quotes (not consumed).
    fn skip_item(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b',' => return,
                b'"' => {
                    let _ = self.quoted();
                }
                _ => self.i += 1,
            }
        }
    }

    /// RFC 9110 `token` characters.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            let tchar = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A quoted-string starting at `"`; backslash escapes the next byte. An
    /// unterminated string runs to the end.
    fn quoted(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let mut value = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        value.push(next);
                        self.i += 1;
                    }
                }
                _ => value.push(c),
            }
        }
        Some(String::from_utf8_lossy(&value).into_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_and_token_values() {
        let c = bearer([r#"Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:basic mcp:write""#]).unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://gw.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scopes(), vec!["mcp:basic", "mcp:write"]);
        assert_eq!(c.error, None);

        let c = bearer([r#"bearer error=insufficient_scope,scope="a""#]).unwrap();
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scopes(), vec!["a"]);
    }

    #[test]
    fn bearer_among_other_challenges() {
        let header = r#"Basic realm="x", charset="UTF-8", Bearer error="invalid_token", error_description="The access token expired", resource_metadata="https://a/b""#;
        let all = parse(header);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, "Basic");
        let c = bearer([header]).unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(c.resource_metadata.as_deref(), Some("https://a/b"));
        // token68 before the Bearer challenge
        let c = bearer(["Basic YWxhZGRpbjpvcGVuc2VzYW1l==, Bearer scope=\"s\""]).unwrap();
        assert_eq!(c.scope.as_deref(), Some("s"));
        // in a second header value
        let c = bearer(["Negotiate", "Bearer realm=\"r\""]).unwrap();
        assert_eq!(c, BearerChallenge::default());
    }

    #[test]
    fn escapes_case_and_spacing() {
        let c = bearer([r#"BEARER   Scope = "a \"b\" c" ,  RESOURCE_METADATA="u""#]).unwrap();
        assert_eq!(c.scope.as_deref(), Some(r#"a "b" c"#));
        assert_eq!(c.resource_metadata.as_deref(), Some("u"));
    }

    #[test]
    fn no_bearer_and_garbage_never_panic() {
        assert_eq!(bearer(["Basic realm=\"x\""]), None);
        assert_eq!(bearer([""]), None);
        for junk in [
            "\"",
            "Bearer \"",
            "Bearer a=\"unterminated",
            "=,=,=",
            "Bearer ,,,, a",
            "Bearer a=b c=d",
            "\u{1F600} Bearer x=1",
        ] {
            let _ = parse(junk);
            let _ = bearer([junk]);
        }
        let c = bearer(["Bearer a=\"unterminated"]).unwrap();
        assert_eq!(c, BearerChallenge::default());
    }
}
