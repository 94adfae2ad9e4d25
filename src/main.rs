#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keel::cli::{Cli, Command};
use keel_config::Settings;

/// mimalloc rather than glibc's allocator: a server allocates and frees many small blocks per
/// request, which mimalloc does faster (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        // Needs no settings: it may run where keel's configuration is not.
        Command::HashKey => hash_key(),
        Command::Serve => with_settings(serve),
        Command::Migrate => with_settings(migrate),
        Command::Healthcheck { timeout_ms } => with_settings(|settings| healthcheck(&settings, timeout_ms)),
        Command::Config => with_settings(print_config),
    }
}

/// Loads the settings, then runs `command` with them; a bad setting exits with status 2.
fn with_settings(command: impl FnOnce(Settings) -> ExitCode) -> ExitCode {
    match keel::config::load() {
        Ok(settings) => command(settings),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}

fn healthcheck(settings: &Settings, timeout_ms: u64) -> ExitCode {
    match keel::cli::healthcheck(settings, Duration::from_millis(timeout_ms)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(settings: Settings) -> ExitCode {
    match serde_json::to_string_pretty(&settings) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot print configuration: {error}");
            ExitCode::FAILURE
        }
    }
}

fn hash_key() -> ExitCode {
    match keel::cli::hash_key(std::io::stdin().lock()) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}

fn migrate(settings: Settings) -> ExitCode {
    if settings.database.url.is_none() {
        eprintln!("configuration error: `database.url` must be set (or DATABASE_URL) to migrate");
        return ExitCode::from(2);
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cannot start the tokio runtime");
    let mut database = settings.database;
    database.migrate = true;
    match runtime.block_on(keel_operations::store::PostgresStore::connect(&database)) {
        Ok(_) => {
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot migrate: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    match keel::startup::serve(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Logged too, when the log writer had started; this line is for when it had not.
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
