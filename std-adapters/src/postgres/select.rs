//! The store the environment chooses: PostgreSQL when configured, the in-process store
//! otherwise.

use std::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use resilient_circuit::BreakerConfig;

use super::{
    PostgresStore, PostgresStoreBuilder, PostgresStoreError, Selection, SettingsError, load_dotenv,
};
use crate::{BreakerKey, MemoryStore, SharedBreaker, StoreError, store::report};

/// Why [`AnyStore::from_env`] refused to start (only with `RC_DB_STRICT` set: otherwise it
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

/// The store the environment asks for, and the namespace (`RC_NAMESPACE`) its breakers use.
///
/// ```
/// use resilient_circuit_std::postgres::AnyStore;
/// use resilient_circuit_std::{Breaker, BreakerConfig};
///
/// // PostgreSQL if RC_DB_DSN (or RC_DB_HOST with RC_DB_PASSWORD) is set, else in process.
/// let store = AnyStore::from_env()?;
/// let breaker = store.breaker("inventory-db", BreakerConfig::new())?;
/// assert_eq!(breaker.call(|| Ok::<_, std::io::Error>(7)).unwrap(), 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct AnyStore {
    backend: Backend,
    namespace: String,
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(PostgresStore),
    Memory(MemoryStore),
}

impl AnyStore {
    /// Reads `.env` (never overriding the environment), then:
    /// - neither `RC_DB_DSN` nor `RC_DB_HOST` + `RC_DB_PASSWORD` set: the in-process store,
    ///   said once at info level;
    /// - configured and usable: PostgreSQL with the default options;
    /// - configured but unusable (unreachable, bad settings, table not ready): a warning and the
    ///   in-process store, or with `RC_DB_STRICT=1` the error.
    pub fn from_env() -> Result<AnyStore, StartError> {
        AnyStore::from_env_with(|builder| builder)
    }

    /// As [`from_env`](Self::from_env), with PostgreSQL options set by `options`.
    pub fn from_env_with(
        options: impl FnOnce(PostgresStoreBuilder) -> PostgresStoreBuilder,
    ) -> Result<AnyStore, StartError> {
        load_dotenv();
        let namespace = super::settings::namespace_from_env();
        let memory = |namespace: String| AnyStore {
            backend: Backend::Memory(MemoryStore::new()),
            namespace,
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
            Ok(store) => Ok(AnyStore {
                backend: Backend::Postgres(store),
                namespace,
            }),
            Err(e) => fall_back(strict, StartError::Postgres(e)).map(|()| memory(namespace)),
        }
    }

    /// The PostgreSQL store, when the breakers are shared through it (for
    /// [`flush`](PostgresStore::flush) and monitoring).
    pub fn postgres(&self) -> Option<&PostgresStore> {
        match &self.backend {
            Backend::Postgres(store) => Some(store),
            Backend::Memory(_) => None,
        }
    }

    /// Whether the breakers are shared through PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The namespace of this store's breakers (`RC_NAMESPACE`, default `default`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A breaker on `(namespace, resource_key)`, on PostgreSQL or in process: a
    /// [`SharedBreaker`] either way. A key held in this process keeps the configuration it was
    /// made with ([`StoreError::ConfigMismatch`](crate::StoreError) for another).
    ///
    /// ```
    /// use resilient_circuit_std::postgres::AnyStore;
    /// use resilient_circuit_std::{Breaker, BreakerConfig, classify::ShouldHandle};
    ///
    /// let breaker = AnyStore::from_env()?
    ///     .breaker("inventory-db", BreakerConfig::new())?
    ///     .should_handle(ShouldHandle(|e: &std::io::Error| e.kind() != std::io::ErrorKind::NotFound))
    ///     .on_status_change(|old, new| eprintln!("inventory-db: {old} -> {new}"));
    /// let stock = breaker.call(|| Ok::<u32, std::io::Error>(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn breaker(
        &self,
        resource_key: &str,
        config: BreakerConfig,
    ) -> Result<SharedBreaker, StoreError> {
        let key = BreakerKey::new(&self.namespace, resource_key)?;
        match &self.backend {
            Backend::Postgres(store) => store.breaker(key, config),
            Backend::Memory(store) => store.breaker(key, config),
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
