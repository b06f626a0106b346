//! PostgreSQL (feature `postgres`): breakers shared by every process, Rust or Python, through
//! the Python package's table; its setup and checks; the connection settings; and the choice of
//! store from the environment.
//!
//! The SQL lives here once; `cargo xtask pg-setup` and `pg-check` use it.

mod catalog;
mod dsn;
mod error;
mod options;
mod row;
mod schema;
mod select;
mod settings;
mod store;
mod tls;
mod worker;

pub use crate::StoreUnavailable;
pub use error::{ConnectError, PostgresStoreError};
pub use options::{MAX_PENDING_OUTCOMES, OnOutage};
pub use schema::{
    INDEXES, NOTIFY_CHANNEL, Privileges, RC_TRIGGERS, SchemaReport, SetupError, SetupOutcome,
    TABLE, TRIGGER, WRITERS_TABLE, grant_sql, inspect, privileges, quote_ident, setup, setup_sql,
};
pub use select::{AnyStore, StartError};
pub use settings::{DbSettings, Selection, SettingsError, load_dotenv};
pub use store::{PostgresStore, PostgresStoreBuilder};
pub use tls::SslMode;
/// The driver's connection configuration, for [`DbSettings::from_config`].
pub use tokio_postgres::Config;
/// A host of a [`Config`]: a name or address, or a Unix socket's directory.
pub use tokio_postgres::config::Host;
