//! The thread-safe in-process store: one shared state per `(namespace, resource_key)`.

use std::{any::Any, collections::HashMap, fmt, num::NonZeroUsize, sync::OnceLock};

use resilient_circuit::{BreakerConfig, time::Clock};

use super::{
    counters::KeyCounters,
    error::StoreError,
    key_store::{SharedBreaker, shared_breaker},
    replica::Replicator,
    shared_state::{SharedState, is_forgettable},
    window::SharedWindow,
};
use crate::{
    BreakerKey,
    key::{DEFAULT_NAMESPACE, IntoBreakerKey},
    sync::{Arc, AtomicU64, Mutex, Ordering, lock},
    time::CoarseClock,
};

/// How many keys a [`MemoryStore`] holds by default (as the Python package's `InMemoryStorage`).
pub const DEFAULT_MAX_ENTRIES: NonZeroUsize = NonZeroUsize::new(8192).unwrap();

/// Breaker states keyed by `(namespace, resource_key)`: the one store a server holds. Clones
/// share the store.
///
/// Its breakers' state is in this process. A store made by
/// [`PostgresStore::connect`](crate::postgres::PostgresStore::connect) (or chosen by the
/// environment: [`AnyStore::from_env`](crate::postgres::AnyStore)) also replicates each key
/// through the key's row, shared with every process of the fleet; what only such a store has
/// (flushing, its connection's health) is its [`postgres`](Self::postgres) handle. A store
/// made by [`MemoryStore::replicated`] replicates each key through a key-value store of your
/// own ([`store::copies`](crate::store::copies)).
///
/// The store has one clock, `C` ([`CoarseClock`] unless made with
/// [`with_clock`](MemoryStore::with_clock)): every breaker it hands out reads it, so the
/// breakers of a key share one timeline as they share one state and one configuration.
///
/// Bounded (a PostgreSQL store is not: it forgets a key no handle has held for a while):
/// when a new key arrives and the store is full, it forgets the key whose last handle
/// was handed out longest ago among those no breaker handle holds and that are not a live OPEN
/// (one whose cooldown has not ended). If every key is held or OPEN, making a breaker for a
/// new key fails with [`StoreError::Full`] rather than silently splitting a shared state.
///
/// ```
/// use resilient_circuit_std::{BreakerConfig, BreakerKey, MemoryStore};
///
/// let store = MemoryStore::with_max_entries(std::num::NonZeroUsize::new(2).unwrap());
/// let a = store.breaker(BreakerKey::resource("a")?, BreakerConfig::new())?;
/// let b = store.breaker(BreakerKey::resource("b")?, BreakerConfig::new())?;
/// assert!(store.breaker(BreakerKey::resource("c")?, BreakerConfig::new()).is_err()); // a, b held
/// drop(a);
/// assert!(store.breaker(BreakerKey::resource("c")?, BreakerConfig::new()).is_ok()); // "a" forgotten
/// assert_eq!(store.len(), 2);
/// # drop(b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MemoryStore<C = CoarseClock> {
    registry: Arc<Registry>,
    clock: C,
}

struct Registry {
    /// What the keys are replicated through, if anything (set once, before the store is handed
    /// out); it lives as long as the store. First, so that it is dropped first: what the keys
    /// have not sent yet goes while the registry still holds them.
    replication: OnceLock<std::sync::Arc<dyn Replication>>,
    entries: Mutex<HashMap<BreakerKey, Arc<SharedState>>>,
    max_entries: usize,
    tick: AtomicU64,
    /// The namespace of keys named by their resource key alone.
    namespace: Box<str>,
}

/// What a store's keys are replicated through (the PostgreSQL store's worker).
pub(crate) trait Replication: Any + Send + Sync {
    /// The replicator a new key's state reports to.
    fn replicator(&self) -> Arc<dyn Replicator>;
    /// `key`'s state was just made: load what the shared copy holds.
    fn made(&self, key: &BreakerKey, shared: &Arc<SharedState>);
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store for up to [`DEFAULT_MAX_ENTRIES`] keys, on [`CoarseClock`].
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store for up to `max_entries` keys, on [`CoarseClock`].
    pub fn with_max_entries(max_entries: NonZeroUsize) -> Self {
        Self::with_clock_and_max_entries(CoarseClock, max_entries)
    }
}

impl<C: Clock + Clone> MemoryStore<C> {
    /// A store for up to [`DEFAULT_MAX_ENTRIES`] keys whose breakers read `clock`:
    /// [`StdClock`](crate::time::StdClock) for full resolution,
    /// [`TokioClock`](crate::time::TokioClock) under a paused runtime, a fake one in tests.
    ///
    /// ```
    /// use resilient_circuit_std::{Breaker, BreakerConfig, BreakerKey, MemoryStore, Ratio, time::Instant};
    ///
    /// // A clock that never moves: an OPEN breaker stays OPEN.
    /// let store = MemoryStore::with_clock(Instant::ZERO);
    /// let config = BreakerConfig::new()
    ///     .failure_limit(Ratio::new(1, 1)?)
    ///     .cooldown(std::time::Duration::from_secs(30));
    /// let breaker = store.breaker(BreakerKey::resource("sensor")?, config)?;
    /// let _ = breaker.call(|| Err::<(), _>("down"));
    /// assert!(breaker.call(|| Ok::<_, &str>(())).unwrap_err().is_rejected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_clock(clock: C) -> Self {
        Self::with_clock_and_max_entries(clock, DEFAULT_MAX_ENTRIES)
    }

    /// A store for up to `max_entries` keys whose breakers read `clock`.
    pub fn with_clock_and_max_entries(clock: C, max_entries: NonZeroUsize) -> Self {
        Self::with_parts(clock, max_entries, DEFAULT_NAMESPACE)
    }

    /// A store whose breakers named by a resource key alone are in `namespace`.
    pub(crate) fn with_parts(clock: C, max_entries: NonZeroUsize, namespace: &str) -> Self {
        MemoryStore {
            registry: Arc::new(Registry {
                entries: Mutex::new(HashMap::new()),
                max_entries: max_entries.get(),
                tick: AtomicU64::new(0),
                namespace: namespace.into(),
                replication: OnceLock::new(),
            }),
            clock,
        }
    }

    /// A breaker on `key`'s state (a [`BreakerKey`], or a resource key in this store's
    /// [`namespace`](Self::namespace)), made on first use with `config`, whose windows must fit
    /// [`MAX_WINDOW`](crate::store::MAX_WINDOW). While a handle holds the key, or it is a live
    /// OPEN, every new handle must bring the same configuration
    /// ([`StoreError::ConfigMismatch`] otherwise); a key nothing holds is remade with the new
    /// one.
    ///
    /// On a replicated store ([`PostgresStore`](crate::postgres::PostgresStore), or
    /// [`MemoryStore::replicated`]), breakers of one key share their state in every process
    /// too, through its row or its shared copy; a new key's row (or copy) is read before this
    /// returns (a row at most the round-trip timeout; when it cannot be read in time, the
    /// outage policy applies), and other processes apply their own configurations.
    ///
    /// A configuration with a [`probe_lease`](BreakerConfig::probe_lease) is refused
    /// ([`StoreError::ProbeLease`]): these stores give probe slots back themselves.
    pub fn breaker(
        &self,
        key: impl IntoBreakerKey,
        config: BreakerConfig,
    ) -> Result<SharedBreaker<C>, StoreError> {
        let key = key.into_breaker_key(&self.registry.namespace)?;
        let valid = config.validate::<SharedWindow>()?;
        if config.probe_lease.is_some() {
            return Err(StoreError::ProbeLease);
        }
        let replication = self.registry.replication.get();
        let (shared, made) =
            self.entry(
                key.clone(),
                config,
                |tick, config, counters| match replication {
                    Some(replication) => {
                        SharedState::replicated(tick, config, counters, replication.replicator())
                    }
                    None => SharedState::new(tick, config, counters),
                },
            )?;
        if made && let Some(replication) = replication {
            replication.made(&key, &shared);
        }
        Ok(shared_breaker(shared, key, valid, self.clock.clone()))
    }

    /// `key`'s state, made by `make(tick, config, counters)` on first use; whether it was just
    /// made. An existing state must have been made with `config`.
    fn entry(
        &self,
        key: BreakerKey,
        config: BreakerConfig,
        make: impl FnOnce(u64, BreakerConfig, KeyCounters) -> SharedState,
    ) -> Result<(Arc<SharedState>, bool), StoreError> {
        let registry = &self.registry;
        let tick = registry.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let mut entries = lock(&registry.entries);
        if let Some(shared) = entries.get(&key) {
            if shared.config == config {
                shared.last_handed_out.store(tick, Ordering::Relaxed);
                return Ok((Arc::clone(shared), false));
            }
            // A key no handle holds, with nothing to keep (no live OPEN, nothing to send), is
            // forgotten as the bound would forget it, and made again below with the new
            // configuration; any other refuses it.
            if !is_forgettable(shared, self.clock.now()) {
                return Err(StoreError::ConfigMismatch {
                    key,
                    existing: shared.config,
                });
            }
            entries.remove(&key);
        }
        if entries.len() >= registry.max_entries {
            let now = self.clock.now();
            let evictable = entries
                .iter()
                .filter(|(_, shared)| is_forgettable(shared, now))
                .min_by_key(|(_, shared)| shared.last_handed_out.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone());
            match evictable {
                Some(oldest) => {
                    entries.remove(&oldest);
                }
                None => {
                    return Err(StoreError::Full {
                        max_entries: registry.max_entries,
                    });
                }
            }
        }
        let shared = Arc::new(make(tick, config, KeyCounters::new(&key)));
        entries.insert(key, Arc::clone(&shared));
        Ok((shared, true))
    }
}

/// Forgets a key of a store while the store lives (see [`MemoryStore::forgetter`]).
#[cfg(feature = "postgres")]
pub(crate) type Forget = Box<dyn Fn(&BreakerKey, &Arc<SharedState>) -> bool + Send>;

#[cfg(feature = "postgres")]
impl<C: Clock + Clone + Send + 'static> MemoryStore<C> {
    /// For the store's replicator: forgets a key if its state is the one given, nothing holds
    /// it and it has nothing to keep (as the bound would forget it); whether it did. It keeps
    /// the store's keys no longer than the store.
    pub(crate) fn forgetter(&self) -> Forget {
        let registry = Arc::downgrade(&self.registry);
        let clock = self.clock.clone();
        Box::new(move |key, shared| {
            let Some(registry) = registry.upgrade() else {
                return false;
            };
            let mut entries = lock(&registry.entries);
            let forgettable = entries.get(key).is_some_and(|entry| {
                Arc::ptr_eq(entry, shared) && is_forgettable(entry, clock.now())
            });
            if forgettable {
                entries.remove(key);
            }
            forgettable
        })
    }
}

impl<C> MemoryStore<C> {
    /// How many keys are held.
    pub fn len(&self) -> usize {
        lock(&self.registry.entries).len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has a state here.
    pub fn contains(&self, key: &BreakerKey) -> bool {
        lock(&self.registry.entries).contains_key(key)
    }

    /// The bound on keys.
    pub fn max_entries(&self) -> usize {
        self.registry.max_entries
    }

    /// The namespace of the keys this store's breakers are named by their resource key alone
    /// ([`DEFAULT_NAMESPACE`] unless the environment chose another: `RC_NAMESPACE`).
    pub fn namespace(&self) -> &str {
        &self.registry.namespace
    }

    /// What the keys are replicated through, if anything.
    #[cfg(feature = "postgres")]
    pub(crate) fn replication(&self) -> Option<&std::sync::Arc<dyn Replication>> {
        self.registry.replication.get()
    }

    /// Replicates the keys made from now on through `replication`, for as long as the store
    /// lives; `false` if the store already replicates.
    // Replication's alone (shared copies, PostgreSQL), which the loom model leaves out.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn replicate_through(&self, replication: std::sync::Arc<dyn Replication>) -> bool {
        self.registry.replication.set(replication).is_ok()
    }

    /// The clock this store's breakers read.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C> fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .field("max_entries", &self.registry.max_entries)
            .finish()
    }
}
