//! PostgreSQL (feature `postgres`): the table shared with the Python package, its setup and
//! checks, and the connection settings.
//!
//! The SQL lives here once; `cargo xtask pg-setup` and `pg-check` use it.

mod schema;
mod settings;

pub use schema::{
    INDEXES, Privileges, SchemaReport, SetupError, SetupOutcome, TABLE, TRIGGER, grant_sql,
    inspect, privileges, quote_ident, setup, setup_sql,
};
pub use settings::{DbSettings, Selection, SettingsError, load_dotenv};
