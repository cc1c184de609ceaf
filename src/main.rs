//! The `switchboard` binary: parse the command line and hand over to [`switchboard::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    // A worker's process sentinel: before anything else (no argument parsing, no runtime).
    #[cfg(target_os = "linux")]
    if std::env::args_os().nth(1).is_some_and(|a| a == switchboard::upstream::process::SENTINEL_ARG) {
        return switchboard::upstream::process::sentinel_main();
    }
    let cli = switchboard::cli::Cli::parse();
    match switchboard::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
