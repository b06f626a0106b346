//! Why a PostgreSQL store could not start.

use std::fmt;

/// Why a [`PostgresStore`](super::PostgresStore) could not start. Never contains a password or a DSN's user info.
///
/// ```
/// use resilient_circuit_std::postgres::PostgresStoreError;
///
/// let e = PostgresStoreError::SchemaNotReady(vec!["column rc_epoch is missing".into()]);
/// assert!(e.to_string().ends_with("run `cargo xtask pg-setup`"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostgresStoreError {
    /// The database could not be reached or refused the connection.
    Connect(String),
    /// The table is missing or unusable; `cargo xtask pg-setup` makes or completes it.
    SchemaNotReady(Vec<String>),
}

impl fmt::Display for PostgresStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostgresStoreError::Connect(why) => write!(f, "cannot use PostgreSQL: {why}"),
            PostgresStoreError::SchemaNotReady(problems) => write!(
                f,
                "the table public.rc_circuit_breakers is not ready ({}); run `cargo xtask pg-setup`",
                problems.join("; ")
            ),
        }
    }
}

impl std::error::Error for PostgresStoreError {}
