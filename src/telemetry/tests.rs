use std::ffi::OsStr;

use super::use_ansi;

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let check = |terminal: bool, no_color: Option<&str>, expected: bool| {
        assert_eq!(
            use_ansi(terminal, no_color.map(OsStr::new)),
            expected,
            "terminal={terminal} NO_COLOR={no_color:?}"
        );
    };
    check(true, None, true);
    check(false, None, false); // a pipe or a log file: plain text
    check(true, Some("1"), false);
    check(true, Some("0"), false); // any non-empty value disables colour
    check(false, Some("1"), false);
    check(true, Some(""), true); // an empty NO_COLOR counts as unset
}
