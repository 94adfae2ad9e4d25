//! Configuration layering, overrides and validation.

use keel_config::{LogFormat, Settings};

fn load(vars: &[(&str, &str)]) -> Result<Settings, String> {
    keel::config::load_from(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).map_err(|e| e.to_string())
}

#[test]
fn defaults_need_no_file_and_no_variable() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.environment, "development");
    assert_eq!(settings.server.host, "127.0.0.1");
    assert_eq!(settings.server.port, 8080);
    assert_eq!(settings.log.format, LogFormat::Pretty);
}

#[test]
fn the_environment_file_overrides_the_defaults() {
    let production = load(&[("APP_ENV", "production"), ("APP_AUTH__ALLOW_ANONYMOUS", "true")]).unwrap();
    assert_eq!(production.server.host, "0.0.0.0");
    assert_eq!(production.log.format, LogFormat::Json);
    assert_eq!(production.server.port, 8080, "what the environment file does not set stays");
    assert_eq!(load(&[("APP_ENV", "test")]).unwrap().server.port, 0);
}

#[test]
fn an_unknown_environment_is_refused() {
    let error = load(&[("APP_ENV", "staging")]).unwrap_err();
    assert!(error.contains("APP_ENV") && error.contains("staging"), "{error}");
}

#[test]
fn variables_override_nested_keys() {
    let settings =
        load(&[("APP_SERVER__PORT", "9000"), ("APP_OPERATIONS__MAX_RUNNING", "3"), ("APP_LOG__FORMAT", "json")])
            .unwrap();
    assert_eq!(settings.server.port, 9000);
    assert_eq!(settings.operations.max_running, 3);
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn port_is_honoured_and_app_variables_win_over_it() {
    assert_eq!(load(&[("PORT", "7000")]).unwrap().server.port, 7000);
    assert_eq!(load(&[("PORT", "7000"), ("APP_SERVER__PORT", "9000")]).unwrap().server.port, 9000);
    let error = load(&[("PORT", "http")]).unwrap_err();
    assert!(error.contains("PORT"), "{error}");
}

#[test]
fn a_config_file_overrides_the_environment_file() {
    let path = std::env::temp_dir().join(format!("keel-config-{}.toml", std::process::id()));
    std::fs::write(&path, "[server]\nport = 6000\n").unwrap();
    let settings = load(&[("APP_CONFIG_FILE", path.to_str().unwrap())]).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(settings.server.port, 6000);
    let error = load(&[("APP_CONFIG_FILE", "/no/such/file.toml")]).unwrap_err();
    assert!(error.contains("APP_CONFIG_FILE"), "{error}");
}

#[test]
fn an_invalid_value_names_the_key() {
    let error = load(&[("APP_SERVER__PORT", "eighty")]).unwrap_err();
    assert!(error.contains("server.port") && error.contains("APP_SERVER__PORT"), "{error}");
    let error = load(&[("APP_SERVER__PORT", "70000")]).unwrap_err();
    assert!(error.contains("server.port"), "{error}");
    let error = load(&[("APP_OPERATIONS__MAX_RUNNING", "0")]).unwrap_err();
    assert!(error.contains("operations.max_running") && error.contains("greater than 0"), "{error}");
    let error = load(&[("APP_LOG__FORMAT", "xml")]).unwrap_err();
    assert!(error.contains("log.format"), "{error}");
    let error = load(&[("APP_SERVER__HOST", "not a host")]).unwrap_err();
    assert!(error.contains("server.host"), "{error}");
}

#[test]
fn an_unknown_key_is_refused_rather_than_ignored() {
    let error = load(&[("APP_SERVER__PROT", "9000")]).unwrap_err();
    assert!(error.contains("prot"), "{error}");
}

#[test]
fn long_polls_must_end_before_the_request_timeout() {
    let error = load(&[("APP_OPERATIONS__MAX_WAIT_MS", "60000")]).unwrap_err();
    assert!(error.contains("operations.max_wait_ms"), "{error}");
}

#[test]
fn database_url_comes_from_the_platform_variable_and_is_never_printed() {
    let url = "postgres://keel:hunter2@db.internal:5432/keel";
    let settings = load(&[("DATABASE_URL", url)]).unwrap();
    assert_eq!(settings.database.url.as_ref().map(|u| u.expose().as_str()), Some(url));
    let printed = format!("{} {settings:?}", serde_json::to_string(&settings).unwrap());
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("[redacted]"));
    let ours = load(&[("DATABASE_URL", url), ("APP_DATABASE__URL", "postgres://other/db")]).unwrap();
    assert_eq!(ours.database.url.unwrap().expose(), "postgres://other/db", "APP_* wins, as over PORT");
}

#[test]
fn the_postgres_store_needs_a_database_url() {
    let error = load(&[("APP_OPERATIONS__STORE", "postgres")]).unwrap_err();
    assert!(error.contains("database.url") && error.contains("DATABASE_URL"), "{error}");
    let settings = load(&[("APP_OPERATIONS__STORE", "postgres"), ("DATABASE_URL", "postgres://h/db")]).unwrap();
    assert_eq!(settings.operations.store, keel_config::StoreKind::Postgres);
    let error = load(&[("APP_OPERATIONS__STORE", "mysql")]).unwrap_err();
    assert!(error.contains("operations.store"), "{error}");
}

#[test]
fn heartbeats_must_come_well_within_the_lease() {
    let error = load(&[("APP_OPERATIONS__LEASE_TTL_MS", "1000"), ("APP_OPERATIONS__HEARTBEAT_INTERVAL_MS", "500")])
        .unwrap_err();
    assert!(error.contains("operations.heartbeat_interval_ms") && error.contains("a third"), "{error}");
    assert!(
        load(&[("APP_OPERATIONS__LEASE_TTL_MS", "1500"), ("APP_OPERATIONS__HEARTBEAT_INTERVAL_MS", "500")]).is_ok()
    );
    let error = load(&[("APP_DATABASE__MAX_CONNECTIONS", "0")]).unwrap_err();
    assert!(error.contains("database.max_connections"), "{error}");
}

#[test]
fn the_postgres_store_needs_three_connections_at_least() {
    let error = load(&[("APP_DATABASE__MAX_CONNECTIONS", "2")]).unwrap_err();
    assert!(error.contains("database.max_connections") && error.contains("at least 3"), "{error}");
    assert!(load(&[("APP_DATABASE__MAX_CONNECTIONS", "3")]).is_ok());
}

#[test]
fn the_public_url_must_be_a_plain_http_base() {
    let settings = load(&[("APP_SERVER__PUBLIC_URL", "https://api.example.com/billing")]).unwrap();
    assert_eq!(settings.server.public_url.as_deref(), Some("https://api.example.com/billing"));
    for bad in
        ["api.example.com", "ftp://api.example.com", "https://user:pw@api.example.com", "https://api.example.com/?x=1"]
    {
        let error = load(&[("APP_SERVER__PUBLIC_URL", bad)]).unwrap_err();
        assert!(error.contains("server.public_url"), "{bad}: {error}");
    }
    assert_eq!(load(&[]).unwrap().server.public_url, None, "unset by default");
}

#[test]
fn an_unknown_key_of_the_service_is_refused_by_name() {
    let error = load(&[("APP_SERVICE__GRETING", "Hi")]).unwrap_err();
    assert!(error.contains("service") && error.contains("greting"), "{error}");
}
