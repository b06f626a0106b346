//! Where the database is: `RC_DB_*` variables, filled in from a `.env` file.

use std::{
    collections::HashMap,
    env, fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use tokio_postgres::config::{Config, Host};

use super::{
    ConnectError, SslMode,
    dsn::{TlsKeys, split_tls_keys},
    tls::{Tls, TlsSettings},
};
use crate::store::report;

/// The database the breakers share, as configured.
#[derive(Clone)]
pub struct DbSettings {
    config: Config,
    tls: TlsSettings,
    /// The connector, made once (it reads the certificate files) and shared by the clones.
    connector: Arc<OnceLock<Result<Tls, String>>>,
    /// Connections go through a pooler in transaction mode.
    transaction_pooler: bool,
    namespace: String,
    strict: bool,
    app_user: Option<String>,
}

/// Whether the environment asks for PostgreSQL.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Neither `RC_DB_DSN` nor `RC_DB_HOST` with `RC_DB_PASSWORD` is set: use the in-process
    /// store.
    NotConfigured,
    /// PostgreSQL, with these settings.
    Configured(Box<DbSettings>),
}

/// A setting that cannot be used. Never contains a password or a DSN's user info.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// `RC_DB_DSN` did not parse.
    BadDsn(String),
    /// `RC_DB_PORT` is not a port number.
    BadPort,
    /// `sslmode` (`RC_DB_SSLMODE`, or in `RC_DB_DSN`) is none of libpq's six.
    BadSslMode(String),
    /// The TLS settings cannot be used: a certificate or key file that cannot be read, no
    /// trusted roots.
    Tls(String),
    /// `RC_DB_POOLER` is none of `none`, `session`, `transaction`.
    BadPooler(String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::BadDsn(why) => {
                write!(f, "RC_DB_DSN is not a valid connection string: {why}")
            }
            SettingsError::BadPort => f.write_str("RC_DB_PORT is not a port number"),
            SettingsError::BadSslMode(mode) => {
                // Echoed only when it looks like a mode (a misparse could make it a secret).
                let shown =
                    mode.len() <= 16 && mode.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                if shown {
                    write!(f, "sslmode {mode:?} ")?;
                } else {
                    f.write_str("sslmode ")?;
                }
                f.write_str("is not one of disable, allow, prefer, require, verify-ca, verify-full")
            }
            SettingsError::Tls(why) => write!(f, "TLS: {why}"),
            SettingsError::BadPooler(value) => write!(
                f,
                "RC_DB_POOLER={value:?} is none of none, session, transaction (statement pooling cannot run the store's transactions)"
            ),
        }
    }
}

impl std::error::Error for SettingsError {}

/// The variables of the `.env` file read last, consulted after the environment.
static DOTENV: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Reads a `.env` file from the current directory or its parents: its variables fill in, for
/// the settings read after this, what the environment lacks (a variable that is set always
/// wins). The process environment itself is never changed. Returns whether a file was read.
///
/// ```
/// // Nothing to read is fine: the environment alone is used.
/// let _read = resilient_circuit_std::postgres::load_dotenv();
/// ```
pub fn load_dotenv() -> bool {
    let values = dotenvy::dotenv_iter().ok().map(|iter| {
        iter.filter_map(Result::ok)
            .collect::<HashMap<String, String>>()
    });
    let read = values.is_some();
    *DOTENV.lock().unwrap_or_else(PoisonError::into_inner) = values;
    read
}

/// The `RC_DB_*` connection settings that are set, when PostgreSQL is not selected by them
/// (`RC_DB_HOST` without `RC_DB_PASSWORD`, say): named, for a warning.
pub(crate) fn partly_configured() -> Option<String> {
    const CONNECTION: [&str; 10] = [
        "RC_DB_HOST",
        "RC_DB_PORT",
        "RC_DB_NAME",
        "RC_DB_USER",
        "RC_DB_PASSWORD",
        "RC_DB_SSLMODE",
        "RC_DB_SSLROOTCERT",
        "RC_DB_SSLCERT",
        "RC_DB_SSLKEY",
        "RC_DB_POOLER",
    ];
    let set: Vec<&str> = CONNECTION
        .into_iter()
        .filter(|name| var(name).is_some())
        .collect();
    (!set.is_empty()).then(|| set.join(", "))
}

/// `RC_DB_POOLER`: whether connections go through a pooler in transaction mode.
fn pooler_from_env() -> Result<bool, SettingsError> {
    match var("RC_DB_POOLER").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(mode) if mode == "none" || mode == "session" => Ok(false),
        Some(mode) if mode == "transaction" => Ok(true),
        Some(other) => Err(SettingsError::BadPooler(other)),
    }
}

/// `RC_NAMESPACE`, or [`DEFAULT_NAMESPACE`](crate::key::DEFAULT_NAMESPACE) when unset or blank.
pub(crate) fn namespace_from_env() -> String {
    var("RC_NAMESPACE").unwrap_or_else(|| crate::key::DEFAULT_NAMESPACE.to_owned())
}

fn var(name: &str) -> Option<String> {
    let set = |v: &String| !v.trim().is_empty();
    env::var(name).ok().filter(set).or_else(|| {
        DOTENV
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|values| values.get(name).cloned())
            .filter(set)
    })
}

pub(crate) fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl Selection {
    /// Reads the environment (after [`load_dotenv`]): PostgreSQL iff `RC_DB_DSN` is set, or
    /// `RC_DB_HOST` and `RC_DB_PASSWORD` both are.
    pub fn from_env() -> Result<Selection, SettingsError> {
        if var("RC_DB_DSN").is_none()
            && (var("RC_DB_HOST").is_none() || var("RC_DB_PASSWORD").is_none())
        {
            return Ok(Selection::NotConfigured);
        }
        DbSettings::from_env().map(|settings| Selection::Configured(Box::new(settings)))
    }
}

impl DbSettings {
    /// Settings for the database `config` names, namespace `default`, not strict. No message
    /// about them ever holds the password: [`describe`](Self::describe) leaves it out.
    ///
    /// ```
    /// use resilient_circuit_std::postgres::{Config, DbSettings};
    ///
    /// let config: Config = "host=db.internal user=app password=s3cret dbname=rc".parse()?;
    /// let settings = DbSettings::from_config(config);
    /// assert_eq!(settings.describe(), "host=db.internal port=5432 dbname=rc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_config(config: Config) -> DbSettings {
        DbSettings {
            tls: TlsSettings {
                mode: driver_mode(&config),
                ..TlsSettings::default()
            },
            connector: Arc::default(),
            transaction_pooler: false,
            config,
            namespace: crate::key::DEFAULT_NAMESPACE.to_owned(),
            strict: false,
            app_user: None,
        }
    }

    /// Settings from a libpq connection string, `key=value` pairs or a `postgresql://` URL,
    /// TLS keys included (`sslmode` with all six of libpq's modes, `sslrootcert`, `sslcert`,
    /// `sslkey`; the files they name are read now). Namespace `default`, not strict.
    ///
    /// ```
    /// use resilient_circuit_std::postgres::{DbSettings, SslMode};
    ///
    /// let settings = DbSettings::from_dsn("postgresql://app@db.internal/rc?sslmode=require")?;
    /// assert_eq!(settings.ssl_mode(), SslMode::Require);
    /// assert_eq!(settings.describe(), "host=db.internal port=5432 dbname=rc");
    /// # Ok::<(), resilient_circuit_std::postgres::SettingsError>(())
    /// ```
    pub fn from_dsn(dsn: &str) -> Result<DbSettings, SettingsError> {
        let (rest, keys) = split_tls_keys(dsn);
        let config = parse_dsn(&rest)?;
        let tls = tls_settings(&keys, driver_mode(&config))?;
        let settings = DbSettings {
            tls,
            ..DbSettings::from_config(config)
        };
        // The files named are read now, so a missing one is an error here.
        settings.tls().map_err(SettingsError::Tls)?;
        Ok(settings)
    }

    /// The settings from the environment, with the defaults `pg-setup` uses when something is
    /// missing: host `localhost`, port 5432, database `resilient_circuit_db`, user `postgres`.
    /// TLS from `RC_DB_SSLMODE` (default `prefer`), `RC_DB_SSLROOTCERT` (a PEM file, or
    /// `system`: the platform's roots, the default), `RC_DB_SSLCERT` and `RC_DB_SSLKEY` (a client
    /// certificate); with `RC_DB_DSN`, the DSN's own TLS keys win, and a warning says so.
    pub fn from_env() -> Result<DbSettings, SettingsError> {
        let env_keys = TlsKeys {
            sslmode: var("RC_DB_SSLMODE"),
            sslrootcert: var("RC_DB_SSLROOTCERT"),
            sslcert: var("RC_DB_SSLCERT"),
            sslkey: var("RC_DB_SSLKEY"),
        };
        let (config, keys) = match var("RC_DB_DSN") {
            Some(dsn) => {
                let (rest, dsn_keys) = split_tls_keys(&dsn);
                let config = parse_dsn(&rest)?;
                if env_keys.any() {
                    report::store_warning(if dsn_keys.any() {
                        "RC_DB_SSL* and RC_DB_DSN both set TLS: the DSN's keys win where both name one (RC_DB_SSL* fill in the rest)"
                    } else {
                        "RC_DB_SSL* given with RC_DB_DSN, whose DSN names no TLS key: RC_DB_SSL* are applied to it"
                    });
                }
                (config, dsn_keys.or(env_keys))
            }
            None => {
                let mut config = Config::new();
                config.host(var("RC_DB_HOST").as_deref().unwrap_or("localhost"));
                let port = match var("RC_DB_PORT") {
                    Some(p) => p.trim().parse().map_err(|_| SettingsError::BadPort)?,
                    None => 5432,
                };
                config.port(port);
                config.dbname(
                    var("RC_DB_NAME")
                        .as_deref()
                        .unwrap_or("resilient_circuit_db"),
                );
                config.user(var("RC_DB_USER").as_deref().unwrap_or("postgres"));
                if let Some(password) = var("RC_DB_PASSWORD") {
                    config.password(password.as_str());
                }
                (config, env_keys)
            }
        };
        let tls = tls_settings(&keys, driver_mode(&config))?;
        let settings = DbSettings {
            config,
            tls,
            connector: Arc::default(),
            transaction_pooler: pooler_from_env()?,
            namespace: namespace_from_env(),
            strict: flag("RC_DB_STRICT"),
            app_user: var("RC_DB_APP_USER"),
        };
        // The files named are read now, so a missing one is an error at start.
        settings.tls().map_err(SettingsError::Tls)?;
        Ok(settings)
    }

    /// The connection configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The namespace breakers use (`RC_NAMESPACE`, default `default`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `RC_DB_STRICT`: an unreachable database is an error rather than a fallback.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// `RC_DB_APP_USER`: the role `pg-setup` grants to and `pg-check` checks by default.
    pub fn app_user(&self) -> Option<&str> {
        self.app_user.as_deref()
    }

    /// Where the database is, without password or user info: `host=... port=... dbname=...`.
    pub fn describe(&self) -> String {
        let mut hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        if hosts.is_empty() {
            hosts = self
                .config
                .get_hostaddrs()
                .iter()
                .map(ToString::to_string)
                .collect();
        }
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        format!(
            "host={} port={} dbname={}",
            if hosts.is_empty() {
                "localhost".to_owned()
            } else {
                hosts.join(",")
            },
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            self.config.get_dbname().unwrap_or("(the user's name)")
        )
    }

    /// How the connection is encrypted (`sslmode`).
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// Connections go through a pooler in transaction mode (PgBouncer's `pool_mode =
    /// transaction`, RDS Proxy), where a session lasts one transaction: the store then keeps
    /// nothing in the session (each statement sets its timeouts in its own transaction, and
    /// goes unprepared), does not `LISTEN` (peers' changes arrive by the `max_staleness` poll),
    /// and ends no server process. `RC_DB_POOLER=transaction` says so from the environment.
    ///
    /// ```
    /// use resilient_circuit_std::postgres::DbSettings;
    ///
    /// let settings = DbSettings::from_dsn("host=pgbouncer.internal port=6432 dbname=rc")?
    ///     .behind_transaction_pooler(true);
    /// assert!(settings.is_behind_transaction_pooler());
    /// # Ok::<(), resilient_circuit_std::postgres::SettingsError>(())
    /// ```
    pub fn behind_transaction_pooler(mut self, behind: bool) -> Self {
        self.transaction_pooler = behind;
        self
    }

    /// Whether connections go through a pooler in transaction mode.
    pub fn is_behind_transaction_pooler(&self) -> bool {
        self.transaction_pooler
    }

    /// Connects, with TLS as [`ssl_mode`](Self::ssl_mode) says.
    pub fn connect(&self) -> Result<postgres::Client, ConnectError> {
        self.connect_within(None)
    }

    /// Connects (blocking), within `timeout` when the settings name no `connect_timeout`.
    pub(crate) fn connect_within(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<postgres::Client, ConnectError> {
        let tls = self.tls().map_err(ConnectError::Tls)?;
        let mut config = self.config.clone();
        tls.configure(&mut config);
        if let Some(timeout) = timeout
            && config.get_connect_timeout().is_none()
        {
            config.connect_timeout(timeout);
        }
        postgres::Config::from(config)
            .connect(tls.connector)
            .map_err(ConnectError::Postgres)
    }

    /// The TLS connector, made on first use (reading the certificate files named).
    pub(crate) fn tls(&self) -> Result<Tls, String> {
        self.connector.get_or_init(|| self.tls.connector()).clone()
    }
}

impl fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSettings")
            .field("database", &self.describe())
            .field("namespace", &self.namespace)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

/// `dsn` (without its TLS keys) as the driver reads it, refused when part of the password
/// would be read as the host.
fn parse_dsn(dsn: &str) -> Result<Config, SettingsError> {
    let config: Config = dsn
        .parse()
        .map_err(|e: postgres::Error| SettingsError::BadDsn(dsn_error(&e)))?;
    // The URL parser ends the user info at the first `@`: the rest of a password with a raw
    // `@` would be read as the host, and shown wherever the host is.
    let host_has_at = config
        .get_hosts()
        .iter()
        .any(|host| matches!(host, Host::Tcp(name) if name.contains('@')));
    if host_has_at {
        return Err(SettingsError::BadDsn(
            "the user info holds a raw `@`; write it as %40".to_owned(),
        ));
    }
    Ok(config)
}

/// The TLS settings `keys` name, as libpq reads them: the mode `default` (the driver's reading)
/// when they name none, or `verify-full` with `sslrootcert=system`; the roots
/// `~/.postgresql/root.crt` when they name none and that file exists.
fn tls_settings(keys: &TlsKeys, default: SslMode) -> Result<TlsSettings, SettingsError> {
    let root_cert = keys.sslrootcert.clone().or_else(|| {
        let file = std::path::Path::new(&env::var_os("HOME")?).join(".postgresql/root.crt");
        file.exists().then(|| file.display().to_string())
    });
    let system = root_cert.as_deref() == Some("system");
    let mode = match &keys.sslmode {
        Some(mode) => mode.parse()?,
        None if system => SslMode::VerifyFull,
        None => default,
    };
    if system && mode != SslMode::VerifyFull {
        return Err(SettingsError::Tls(format!(
            "sslmode={mode} may not be used with sslrootcert=system: with the platform's roots only verify-full (the name checked too) refuses a certificate anyone can get"
        )));
    }
    if mode == SslMode::VerifyCa && root_cert.is_none() {
        return Err(SettingsError::Tls(
            "sslmode=verify-ca needs sslrootcert (RC_DB_SSLROOTCERT) naming the CA that signs the server's certificate: against the platform's roots, any public certificate would pass"
                .to_owned(),
        ));
    }
    let client_cert = match (&keys.sslcert, &keys.sslkey) {
        (Some(cert), Some(key)) => Some((cert.into(), key.into())),
        (None, None) => None,
        _ => {
            return Err(SettingsError::Tls(
                "a client certificate needs both sslcert and sslkey (RC_DB_SSLCERT, RC_DB_SSLKEY)"
                    .to_owned(),
            ));
        }
    };
    Ok(TlsSettings {
        mode,
        root_cert,
        client_cert,
    })
}

/// The mode the driver read from a DSN (`disable`, `prefer` or `require`).
fn driver_mode(config: &Config) -> SslMode {
    match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => SslMode::Disable,
        tokio_postgres::config::SslMode::Require => SslMode::Require,
        _ => SslMode::Prefer,
    }
}

/// Why a DSN did not parse, in words that hold none of its text: the parser's messages can
/// quote the DSN (a character, or a stray word taken for an option's name), and a DSN holds the
/// password. Option names the parser itself names are kept, as are its fixed messages.
fn dsn_error(error: &postgres::Error) -> String {
    let why = std::error::Error::source(error).map_or_else(String::new, ToString::to_string);
    if let Some(at) = why
        .strip_prefix("unexpected character at byte ")
        .and_then(|rest| rest.split(':').next())
    {
        return format!("unexpected character at byte {at}");
    }
    if why.starts_with("unknown option `") {
        return "an unknown option (a value with spaces needs quotes: password='...')".to_owned();
    }
    let fixed = why.starts_with("invalid value for option `")
        || why == "unexpected EOF"
        || why == "unterminated quoted connection parameter value"
        || why == "unterminated parameter";
    if fixed {
        why
    } else {
        "a value is not valid (percent-encoded text that is not UTF-8?)".to_owned()
    }
}
