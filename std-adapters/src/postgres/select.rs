//! The store the environment chooses: PostgreSQL when configured, the in-process store
//! otherwise.

use std::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use super::{
    PostgresStore, PostgresStoreBuilder, PostgresStoreError, Selection, SettingsError, load_dotenv,
};
use crate::{
    MemoryStore,
    store::{DEFAULT_MAX_ENTRIES, report},
    time::CoarseClock,
};

/// Why [`AnyStore::from_env`](MemoryStore::from_env) refused to start (only with `RC_DB_STRICT` set: otherwise it
/// falls back to the in-process store). Never contains a password or a DSN's user info.
///
/// ```
/// use resilient_circuit_std::postgres::{SettingsError, StartError};
///
/// let e = StartError::Settings(SettingsError::BadPort);
/// assert_eq!(e.to_string(), "RC_DB_PORT is not a port number");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// A `RC_DB_*` setting cannot be used.
    Settings(SettingsError),
    /// PostgreSQL is configured but could not be used.
    Postgres(PostgresStoreError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Settings(e) => e.fmt(f),
            StartError::Postgres(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

/// Said once per process: no database configured.
static SAID_NOT_CONFIGURED: AtomicBool = AtomicBool::new(false);

/// The store the environment asks for: a [`MemoryStore`], the one keyed store type, whose keys
/// are replicated through PostgreSQL when the environment configures it
/// ([`postgres`](MemoryStore::postgres) is then its handle), and whose breakers named by a
/// resource key alone are in the namespace `RC_NAMESPACE` (default `default`).
///
/// ```
/// use resilient_circuit_std::postgres::AnyStore;
/// use resilient_circuit_std::{Breaker, BreakerConfig};
///
/// // PostgreSQL if RC_DB_DSN (or RC_DB_HOST with RC_DB_PASSWORD) is set, else in process.
/// let store = AnyStore::from_env()?;
/// let breaker = store.breaker("inventory-db", BreakerConfig::new())?;
/// assert_eq!(breaker.call(|| Ok::<_, std::io::Error>(7)).unwrap(), 7);
/// if let Some(postgres) = store.postgres() {
///     postgres.flush(std::time::Duration::from_secs(1))?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type AnyStore = MemoryStore;

impl MemoryStore {
    /// Reads `.env` (never overriding the environment), then:
    /// - neither `RC_DB_DSN` nor `RC_DB_HOST` + `RC_DB_PASSWORD` set: the in-process store,
    ///   said once at info level;
    /// - configured and usable: PostgreSQL with the default options;
    /// - configured but unusable (unreachable, bad settings, table not ready): a warning and the
    ///   in-process store, or with `RC_DB_STRICT=1` the error.
    pub fn from_env() -> Result<MemoryStore, StartError> {
        MemoryStore::from_env_with(|builder| builder)
    }

    /// As [`from_env`](Self::from_env), with PostgreSQL options set by `options`.
    pub fn from_env_with(
        options: impl FnOnce(PostgresStoreBuilder) -> PostgresStoreBuilder,
    ) -> Result<MemoryStore, StartError> {
        load_dotenv();
        let namespace = super::settings::namespace_from_env();
        let memory = |namespace: String| {
            MemoryStore::with_parts(CoarseClock, DEFAULT_MAX_ENTRIES, &namespace)
        };
        let strict = super::settings::flag("RC_DB_STRICT");
        let settings = match Selection::from_env() {
            Ok(Selection::NotConfigured) => {
                if !SAID_NOT_CONFIGURED.swap(true, Ordering::Relaxed) {
                    match super::settings::partly_configured() {
                        // Some of the settings, not enough: a warning, which says why.
                        Some(set) => report::store_warning(&format!(
                            "{set} set, but PostgreSQL is selected only by RC_DB_DSN, or RC_DB_HOST with RC_DB_PASSWORD (for passwordless authentication: trust, peer, .pgpass, a client certificate, use RC_DB_DSN): breakers use the in-process store and are NOT shared across processes"
                        )),
                        None => report::store_info(
                            "no database configured (RC_DB_DSN, or RC_DB_HOST with RC_DB_PASSWORD): breakers use the in-process store and are not shared across processes",
                        ),
                    }
                }
                return Ok(memory(namespace));
            }
            Ok(Selection::Configured(settings)) => settings,
            Err(e) => {
                return fall_back(strict, StartError::Settings(e)).map(|()| memory(namespace));
            }
        };
        match options(PostgresStore::builder(*settings)).connect() {
            Ok(postgres) => Ok(postgres.store().clone()),
            Err(e) => fall_back(strict, StartError::Postgres(e)).map(|()| memory(namespace)),
        }
    }
}

fn fall_back(strict: bool, error: StartError) -> Result<(), StartError> {
    if strict {
        return Err(error);
    }
    report::store_warning(&format!(
        "PostgreSQL was requested (RC_DB_DSN or RC_DB_HOST/RC_DB_PASSWORD set) but is unavailable: {error}. Falling back to the in-process store: breaker state is NOT shared across instances. Set RC_DB_STRICT=1 to make this an error."
    ));
    Ok(())
}
