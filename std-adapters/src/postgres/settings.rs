//! Where the database is: `RC_DB_*` variables, filled in from a `.env` file.

use std::{
    collections::HashMap,
    env, fmt,
    sync::{Mutex, PoisonError},
};

use postgres::config::{Config, Host, SslMode};

/// The database the breakers share, as configured.
#[derive(Clone)]
pub struct DbSettings {
    config: Config,
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
    /// `RC_DB_SSLMODE` asks for encryption, which this build cannot do.
    TlsUnavailable(String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::BadDsn(why) => {
                write!(f, "RC_DB_DSN is not a valid connection string: {why}")
            }
            SettingsError::BadPort => f.write_str("RC_DB_PORT is not a port number"),
            SettingsError::TlsUnavailable(mode) => write!(
                f,
                "RC_DB_SSLMODE={mode} needs TLS, which this build does not include; use disable or prefer"
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
            config,
            namespace: crate::key::DEFAULT_NAMESPACE.to_owned(),
            strict: false,
            app_user: None,
        }
    }

    /// The settings from the environment, with the defaults `pg-setup` uses when something is
    /// missing: host `localhost`, port 5432, database `resilient_circuit_db`, user `postgres`.
    pub fn from_env() -> Result<DbSettings, SettingsError> {
        let mut config = match var("RC_DB_DSN") {
            Some(dsn) => {
                let config: Config = dsn
                    .parse()
                    .map_err(|e: postgres::Error| SettingsError::BadDsn(dsn_error(&e)))?;
                // The URL parser ends the user info at the first `@`: the rest of a password
                // with a raw `@` would be read as the host, and shown wherever the host is.
                let host_has_at = config
                    .get_hosts()
                    .iter()
                    .any(|host| matches!(host, Host::Tcp(name) if name.contains('@')));
                if host_has_at {
                    return Err(SettingsError::BadDsn(
                        "the user info holds a raw `@`; write it as %40".to_owned(),
                    ));
                }
                config
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
                config
            }
        };
        if let Some(mode) = var("RC_DB_SSLMODE") {
            match mode.trim() {
                "disable" => config.ssl_mode(SslMode::Disable),
                "prefer" | "allow" => config.ssl_mode(SslMode::Prefer),
                other => return Err(SettingsError::TlsUnavailable(other.to_owned())),
            };
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err(SettingsError::TlsUnavailable("require".to_owned()));
        }
        Ok(DbSettings {
            config,
            namespace: namespace_from_env(),
            strict: flag("RC_DB_STRICT"),
            app_user: var("RC_DB_APP_USER"),
        })
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
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
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

    /// Connects (no TLS).
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(postgres::NoTls)
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
