use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keel::cli::{Cli, Command};
use keel::config::Settings;

/// mimalloc rather than the system allocator: see `keel::allocator`.
#[global_allocator]
static ALLOCATOR: keel::allocator::Mimalloc = keel::allocator::Mimalloc;

fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    if let Command::HashKey = command {
        // Needs no settings: it may run where keel's configuration is not.
        return hash_key();
    }
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Serve => serve(settings),
        Command::Healthcheck { timeout_ms } => {
            match keel::cli::healthcheck(&settings, Duration::from_millis(timeout_ms)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate => migrate(settings),
        Command::HashKey => hash_key(),
        Command::Config => match serde_json::to_string_pretty(&settings) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot print configuration: {error}");
                ExitCode::FAILURE
            }
        },
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
    match runtime.block_on(keel::operations::store::PostgresStore::connect(&database)) {
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
    match keel::startup::serve(settings, keel::operations::kinds::registry(), keel::http::routes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Logged too, when the log writer had started; this line is for when it had not.
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
