use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keel::cli::{Cli, Command};
use keel::config::Settings;
use keel::{Application, lifecycle, telemetry};

/// mimalloc rather than the system allocator: see `keel::allocator`.
#[global_allocator]
static ALLOCATOR: keel::allocator::Mimalloc = keel::allocator::Mimalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
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
    let _telemetry = match telemetry::init(&settings.log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("cannot start the log writer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot start the tokio runtime");
    let outcome = runtime.block_on(async {
        let app = Application::build(settings).await.map_err(|error| error.to_string())?;
        app.run_until_stopped(lifecycle::shutdown_signal()).await.map_err(|error| error.to_string())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
