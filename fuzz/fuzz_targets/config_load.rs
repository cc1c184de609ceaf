//! The config loader on any TOML text, with an empty environment, plus the tool
//! policies built from it (what `serve` and `check-config` do): no panic (a bad config
//! is an error naming the problem, before anything starts), and a config that loads
//! prints (`check-config`) as TOML that loads again to the same printout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::config::Config;

const EXE: &str = "/usr/local/bin/switchboard";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let no_env = |_: &str| None;
    let Ok(config) = Config::load(Some(text), &no_env, EXE) else {
        return;
    };
    let _ = switchboard::results::Policies::from_config(&config);
    let printed = config.redacted_toml();
    let again = Config::load(Some(&printed), &no_env, EXE).expect("the printed config loads");
    assert_eq!(again.redacted_toml(), printed);
});
