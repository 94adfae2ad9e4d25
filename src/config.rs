//! This service's configuration: the files embedded in its binary, and its own keys.
//!
//! keel's keys (`server`, `operations`, `auth`, ...) are defined by `keel-config`, with their
//! defaults in `config/default.toml`. The service's own keys go in the `[service]` table of the
//! same files and into [`ServiceSettings`] below; `APP_SERVICE__<KEY>` overrides one, as for
//! every key. They are read and checked at start-up with the rest ([`load`]), so a bad value
//! stops the process with one line naming the key.

use keel_config::{ConfigError, Files, Settings};
use serde::{Deserialize, Serialize};

/// `config/*.toml`, embedded at build time, so that the binary runs with no file on disk.
pub const FILES: Files = Files {
    default: include_str!("../config/default.toml"),
    environments: &[
        ("development", include_str!("../config/development.toml")),
        ("production", include_str!("../config/production.toml")),
        ("test", include_str!("../config/test.toml")),
    ],
};

/// The service's own keys: the `[service]` table. Add a field here, its default in
/// `config/default.toml` and its check in `ServiceSettings::validate`
/// (docs/guides/add-a-configuration-key.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)] // a misspelt key stops the start-up, naming it
pub struct ServiceSettings {
    // Your keys, each with a doc comment: `pub greeting: String,`.
}

impl ServiceSettings {
    /// Reads the `[service]` table out of `settings`, checked.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let service: Self = settings.service()?;
        service.validate()?;
        Ok(service)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Loads keel's settings and the service's from the embedded files and the process environment.
pub fn load() -> Result<Settings, ConfigError> {
    load_from(std::env::vars())
}

/// [`load`], from the given variables instead of the process environment (for tests).
pub fn load_from(vars: impl IntoIterator<Item = (String, String)>) -> Result<Settings, ConfigError> {
    let settings = Settings::load_from(&FILES, vars)?;
    ServiceSettings::from_settings(&settings)?;
    Ok(settings)
}
