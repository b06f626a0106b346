//! Why a PostgreSQL store could not start, and why a connection could not be made.

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
    /// The role connected lacks privileges the store needs (each `PRIVILEGE on OBJECT`);
    /// `cargo xtask pg-setup --grant-to ROLE`, run as the table's owner, grants them.
    MissingPrivileges {
        /// The role connected.
        role: String,
        /// What it lacks.
        missing: Vec<String>,
    },
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
            PostgresStoreError::MissingPrivileges { role, missing } => write!(
                f,
                "role {role} lacks {}; grant them with `cargo xtask pg-setup --grant-to {role}` (as the table's owner)",
                missing.join(", ")
            ),
        }
    }
}

impl std::error::Error for PostgresStoreError {}

/// Why [`DbSettings::connect`](super::DbSettings::connect) failed: the TLS setup (a
/// certificate file that cannot be read) or the connection (the server's message included).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TLS settings cannot be used.
    Tls(String),
    /// The connection failed or the server refused it.
    Postgres(postgres::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tls(why) => write!(f, "TLS: {why}"),
            ConnectError::Postgres(e) => f.write_str(&describe(e)),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Tls(_) => None,
            ConnectError::Postgres(e) => Some(e),
        }
    }
}

/// A database error with its message (the driver's own text says only "db error"), or a
/// failure to connect with its cause.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // An authentication error names the user (and the database): withheld, as
            // secrets are. The code says what went wrong.
            let message = if code.starts_with("28") {
                withhold_quoted(db.message())
            } else {
                db.message().to_owned()
            };
            format!("{}: {message} ({code})", db.severity())
        }
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// `message` with everything from its first double quote to its last withheld (a name may
/// itself hold a quote, so the quotes cannot be paired).
fn withhold_quoted(message: &str) -> String {
    match (message.find('"'), message.rfind('"')) {
        (Some(first), Some(last)) if first < last => {
            format!("{}\"…\"{}", &message[..first], &message[last + 1..])
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::withhold_quoted;

    #[test]
    fn authentication_messages_lose_their_names() {
        assert_eq!(
            withhold_quoted("password authentication failed for user \"alice\""),
            "password authentication failed for user \"…\""
        );
        assert_eq!(
            withhold_quoted(
                "no pg_hba.conf entry for host \"10.0.0.1\", user \"alice\", database \"rc\", no encryption"
            ),
            "no pg_hba.conf entry for host \"…\", no encryption"
        );
        assert_eq!(
            withhold_quoted("role \"a\"b\" does not exist"),
            "role \"…\" does not exist"
        );
        assert_eq!(withhold_quoted("no quotes"), "no quotes");
    }
}
