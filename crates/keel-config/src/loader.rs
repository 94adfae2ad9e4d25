//! Loading: the layers merged in order (the service's embedded files, `APP_CONFIG_FILE`, `PORT`
//! and `DATABASE_URL`, `APP_*` variables), extracted into [`Settings`] and validated, with every
//! error on one line naming its key and where the value came from.

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;

use crate::{ConfigError, Settings};

/// The service's configuration files, embedded in its binary (`include_str!`).
#[derive(Debug, Clone, Copy)]
pub struct Files {
    /// `config/default.toml`: every key with its default.
    pub default: &'static str,
    /// `config/{name}.toml` for each environment `APP_ENV` may name.
    pub environments: &'static [(&'static str, &'static str)],
}

/// Variables that steer loading itself and therefore are not settings.
const LOADER_VARIABLES: &[&str] = &["ENV", "CONFIG_FILE"];

impl Settings {
    /// Loads settings from the service's embedded files and the process environment.
    pub fn load(files: &Files) -> Result<Self, ConfigError> {
        Self::load_from(files, std::env::vars())
    }

    /// Loads settings as [`Settings::load`] does, from the given variables instead of the
    /// process environment, so tests need not mutate global state.
    pub fn load_from(files: &Files, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

        let environment = lookup("APP_ENV").unwrap_or_else(|| "development".to_owned());
        let environment_toml =
            files.environments.iter().find(|(name, _)| *name == environment).map(|(_, toml)| *toml).ok_or_else(
                || {
                    let known: Vec<&str> = files.environments.iter().map(|(name, _)| *name).collect();
                    ConfigError::invalid("APP_ENV", format!("is {environment:?}; expected one of {known:?}"))
                },
            )?;

        let mut figment = Figment::new().merge(Toml::string(files.default)).merge(Toml::string(environment_toml));
        if let Some(path) = lookup("APP_CONFIG_FILE") {
            if !std::path::Path::new(&path).is_file() {
                return Err(ConfigError::invalid("APP_CONFIG_FILE", format!("names {path:?}, which is not a file")));
            }
            figment = figment.merge(Toml::file(path));
        }
        if let Some(url) = lookup("DATABASE_URL") {
            figment = figment.merge(EnvVariable {
                name: "DATABASE_URL".to_owned(),
                key: "database.url".to_owned(),
                value: url.into(),
            });
        }
        if let Some(port) = lookup("PORT") {
            let port = port_from_platform(&port)?;
            figment = figment.merge(EnvVariable {
                name: "PORT".to_owned(),
                key: "server.port".to_owned(),
                value: port.into(),
            });
        }
        for (name, value) in &vars {
            if let Some(variable) = EnvVariable::setting(name, value) {
                figment = figment.merge(variable);
            }
        }

        let mut settings: Settings = figment.extract().map_err(|e| ConfigError(one_line(e)))?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// The `[service]` table as the service's own settings type `T`; an error names the key.
    /// Give `T` `#[serde(deny_unknown_fields)]` so that a misspelt key is an error too.
    pub fn service<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Figment::from(figment::providers::Serialized::defaults(&self.service)).extract().map_err(|error| {
            ConfigError(one_line(error.into_iter().map(|mut error| {
                error.path.insert(0, "service".to_owned());
                error
            })))
        })
    }
}

/// One `APP_*` variable as a configuration layer, named so errors can point at it.
struct EnvVariable {
    name: String,
    key: String,
    value: Value,
}

impl EnvVariable {
    fn setting(name: &str, raw: &str) -> Option<Self> {
        let rest = name.strip_prefix("APP_")?;
        if rest.is_empty() || LOADER_VARIABLES.contains(&rest) {
            return None;
        }
        Some(Self {
            name: name.to_owned(),
            key: rest.to_lowercase().replace("__", "."),
            value: raw.parse().unwrap_or_else(|never| match never {}),
        })
    }
}

impl Provider for EnvVariable {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = figment::util::nest(&self.key, self.value.clone()).into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

fn port_from_platform(raw: &str) -> Result<u16, ConfigError> {
    raw.trim().parse().map_err(|_| ConfigError::invalid("PORT", format!("is {raw:?}, not a port number (0-65535)")))
}

/// figment reports every problem it found; an operator wants them on one line.
fn one_line(errors: impl IntoIterator<Item = figment::Error>) -> String {
    errors
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let kind = e.kind.to_string();
            match (key.is_empty(), e.metadata.as_ref()) {
                (true, _) => kind,
                (false, Some(meta)) => format!("`{key}` {kind} (from {})", meta.name),
                (false, None) => format!("`{key}` {kind}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
