//! The identity of a shared breaker: `(namespace, resource_key)`.

use std::{fmt, sync::Arc};

/// The longest namespace or resource key: the PostgreSQL column's limit, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// The namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Which shared state a breaker uses: breakers built with equal keys share one state.
///
/// ```
/// use resilient_circuit_std::{BreakerKey, key::KeyError};
///
/// let key = BreakerKey::new("billing", "payments-api")?;
/// assert_eq!((key.namespace(), key.resource_key()), ("billing", "payments-api"));
/// assert_eq!(BreakerKey::resource("payments-api")?.namespace(), "default");
/// assert_eq!(BreakerKey::resource(""), Err(KeyError::Empty { part: "resource_key" }));
/// # Ok::<(), KeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BreakerKey {
    namespace: Arc<str>,
    resource_key: Arc<str>,
}

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The part was empty.
    Empty {
        /// `"namespace"` or `"resource_key"`.
        part: &'static str,
    },
    /// The part was longer than [`MAX_KEY_CHARS`] characters.
    TooLong {
        /// `"namespace"` or `"resource_key"`.
        part: &'static str,
        /// Its length in characters.
        chars: usize,
    },
    /// The part contained a NUL character, which PostgreSQL text cannot hold.
    ContainsNul {
        /// `"namespace"` or `"resource_key"`.
        part: &'static str,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty { part } => write!(f, "the breaker's {part} must not be empty"),
            KeyError::TooLong { part, chars } => write!(
                f,
                "the breaker's {part} has {chars} characters; at most {MAX_KEY_CHARS} are allowed"
            ),
            KeyError::ContainsNul { part } => {
                write!(f, "the breaker's {part} must not contain a NUL character")
            }
        }
    }
}

impl std::error::Error for KeyError {}

fn check(part: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty { part });
    }
    let chars = value.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(KeyError::TooLong { part, chars });
    }
    if value.contains('\0') {
        return Err(KeyError::ContainsNul { part });
    }
    Ok(())
}

impl BreakerKey {
    /// `resource_key` in `namespace`; both non-empty, at most 255 characters, no NUL.
    pub fn new(namespace: &str, resource_key: &str) -> Result<Self, KeyError> {
        check("namespace", namespace)?;
        check("resource_key", resource_key)?;
        Ok(BreakerKey {
            namespace: namespace.into(),
            resource_key: resource_key.into(),
        })
    }

    /// `resource_key` in the [`DEFAULT_NAMESPACE`].
    pub fn resource(resource_key: &str) -> Result<Self, KeyError> {
        Self::new(DEFAULT_NAMESPACE, resource_key)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The resource key.
    pub fn resource_key(&self) -> &str {
        &self.resource_key
    }
}

impl fmt::Debug for BreakerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.resource_key)
    }
}

impl fmt::Display for BreakerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.resource_key)
    }
}

/// What names a breaker in a store: a whole [`BreakerKey`], or a resource key (`&str`,
/// `String`) in the store's namespace ([`MemoryStore::namespace`](crate::MemoryStore::namespace)).
///
/// ```
/// use resilient_circuit_std::{BreakerConfig, BreakerKey, MemoryStore};
///
/// let store = MemoryStore::new();
/// let by_name = store.breaker("payments-api", BreakerConfig::new())?;
/// let by_key = store.breaker(BreakerKey::new("default", "payments-api")?, BreakerConfig::new())?;
/// assert_eq!(by_name.store().key(), by_key.store().key());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait IntoBreakerKey {
    /// The key this names in a store whose namespace is `namespace`.
    fn into_breaker_key(self, namespace: &str) -> Result<BreakerKey, KeyError>;
}

impl IntoBreakerKey for BreakerKey {
    /// The key itself, whatever the store's namespace.
    fn into_breaker_key(self, _: &str) -> Result<BreakerKey, KeyError> {
        Ok(self)
    }
}

impl IntoBreakerKey for &BreakerKey {
    /// The key itself, whatever the store's namespace.
    fn into_breaker_key(self, _: &str) -> Result<BreakerKey, KeyError> {
        Ok(self.clone())
    }
}

impl IntoBreakerKey for &str {
    /// This resource key in the store's namespace.
    fn into_breaker_key(self, namespace: &str) -> Result<BreakerKey, KeyError> {
        BreakerKey::new(namespace, self)
    }
}

impl IntoBreakerKey for String {
    /// This resource key in the store's namespace.
    fn into_breaker_key(self, namespace: &str) -> Result<BreakerKey, KeyError> {
        BreakerKey::new(namespace, &self)
    }
}
