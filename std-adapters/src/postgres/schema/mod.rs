//! The table `rc_circuit_breakers`, exactly as the Python package `resilient-circuit` makes it,
//! so Rust and Python services share it: its setup ([`setup`], [`setup_sql`]) and its checks
//! ([`inspect`], [`privileges`]). `cargo xtask pg-setup` and `pg-check` use them.

mod inspect;
mod privileges;
mod setup;
mod sql;

pub(crate) use inspect::inspect_with;
pub use inspect::{SchemaReport, inspect};
pub(crate) use privileges::privileges_with;
pub use privileges::{Privileges, privileges};
pub use setup::{SetupError, SetupOutcome, setup};
pub(crate) use sql::NOTIFY_CHANNEL;
pub use sql::{TABLE, TRIGGER, WRITERS_TABLE, setup_sql};
