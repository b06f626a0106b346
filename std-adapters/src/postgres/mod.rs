//! PostgreSQL (feature `postgres`): breakers shared by every process, Rust or Python, through
//! the Python package's table; the connection settings; and the choice of store from the
//! environment. The table's setup and checks are in [`schema`].
//!
//! How a key's state is replicated through the table is told in the project's
//! `docs/ARCHITECTURE.md`.

mod catalog;
mod dsn;
mod error;
mod options;
mod row;
pub mod schema;
mod select;
mod settings;
mod store;
mod tls;
mod worker;

pub use error::{ConnectError, PostgresStoreError};
pub use options::{MAX_PENDING_OUTCOMES, OnOutage};
pub use select::{AnyStore, StartError};
pub use settings::{DbSettings, Selection, SettingsError, load_dotenv};
pub use store::{PostgresStore, PostgresStoreBuilder};
pub use tls::SslMode;
/// The driver's connection configuration, for [`DbSettings::from_config`].
pub use tokio_postgres::Config;
/// A host of a [`Config`]: a name or address, or a Unix socket's directory.
pub use tokio_postgres::config::Host;
