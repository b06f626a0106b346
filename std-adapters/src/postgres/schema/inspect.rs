//! What the database holds of the schema.

use postgres::GenericClient;

use super::sql::{INDEXES, RC_TRIGGERS, REQUIRED_COLUMNS, TABLE, TRIGGER, WRITERS_TABLE};
use crate::postgres::catalog::Catalog;

/// What the database holds of the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaReport {
    /// The table exists.
    pub table: bool,
    /// Required columns that are missing or of the wrong type.
    pub column_problems: Vec<String>,
    /// The primary key is exactly (resource_key, namespace).
    pub primary_key: bool,
    /// Indexes that are missing.
    pub missing_indexes: Vec<&'static str>,
    /// The `updated_at` trigger exists.
    pub trigger: bool,
    /// This crate's writers table ([`WRITERS_TABLE`]) exists.
    pub writers_table: bool,
    /// This crate's triggers (`rc_circuit_breakers_rc_period`, `rc_circuit_breakers_rc_notify`)
    /// that are missing.
    pub missing_rc_triggers: Vec<&'static str>,
}

impl SchemaReport {
    /// This crate's store can use the table: what the Python package requires, plus this
    /// crate's columns, writers table and triggers.
    pub fn usable(&self) -> bool {
        self.table
            && self.column_problems.is_empty()
            && self.primary_key
            && self.writers_table
            && self.missing_rc_triggers.is_empty()
    }

    /// Usable, and every index and the trigger are there.
    pub fn complete(&self) -> bool {
        self.usable() && self.missing_indexes.is_empty() && self.trigger
    }

    /// What is wrong or missing, one line each.
    pub fn problems(&self) -> Vec<String> {
        if !self.table {
            return vec![format!("table {TABLE} does not exist")];
        }
        let mut problems = self.column_problems.clone();
        if !self.primary_key {
            problems.push("the primary key is not (resource_key, namespace)".to_owned());
        }
        problems.extend(
            self.missing_indexes
                .iter()
                .map(|name| format!("index {name} is missing")),
        );
        if !self.trigger {
            problems.push(format!("trigger {TRIGGER} is missing"));
        }
        if !self.writers_table {
            problems.push(format!("table {WRITERS_TABLE} does not exist"));
        }
        problems.extend(
            self.missing_rc_triggers
                .iter()
                .map(|name| format!("trigger {name} is missing")),
        );
        problems
    }
}

/// Reads what the database holds of the schema.
pub fn inspect(client: &mut impl GenericClient) -> Result<SchemaReport, postgres::Error> {
    inspect_with(client)
}

/// [`inspect`] through any [`Catalog`].
pub(crate) fn inspect_with<C: Catalog>(client: &mut C) -> Result<SchemaReport, C::Error> {
    let exists = client.flag(
        "SELECT to_regclass('public.rc_circuit_breakers') IS NOT NULL",
        &[],
    )?;
    if !exists {
        return Ok(SchemaReport {
            table: false,
            column_problems: Vec::new(),
            primary_key: false,
            missing_indexes: INDEXES.iter().map(|(name, _)| *name).collect(),
            trigger: false,
            writers_table: false,
            missing_rc_triggers: RC_TRIGGERS.to_vec(),
        });
    }
    let columns: Vec<(String, String)> = client
        .rows(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'rc_circuit_breakers'",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let column_problems = REQUIRED_COLUMNS
        .iter()
        .filter_map(
            |(name, wanted)| match columns.iter().find(|(column, _)| column == name) {
                None => Some(format!("column {name} is missing")),
                Some((_, actual)) if actual != wanted => {
                    Some(format!("column {name} is {actual}, expected {wanted}"))
                }
                Some(_) => None,
            },
        )
        .collect();
    let mut key: Vec<String> = client
        .rows(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = 'public.rc_circuit_breakers'::regclass AND i.indisprimary",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    key.sort();
    let indexes: Vec<String> = client
        .rows(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = 'public' AND tablename = 'rc_circuit_breakers'",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let triggers: Vec<String> = client
        .rows(
            "SELECT tgname::text FROM pg_trigger
             WHERE tgrelid = 'public.rc_circuit_breakers'::regclass AND NOT tgisinternal",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let has_trigger = |name: &str| triggers.iter().any(|t| t == name);
    let writers_table = client.flag(
        "SELECT to_regclass('public.rc_circuit_breaker_writers') IS NOT NULL",
        &[],
    )?;
    Ok(SchemaReport {
        table: true,
        column_problems,
        primary_key: key == ["namespace", "resource_key"],
        missing_indexes: INDEXES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !indexes.iter().any(|index| index == name))
            .collect(),
        trigger: has_trigger(TRIGGER),
        writers_table,
        missing_rc_triggers: RC_TRIGGERS
            .into_iter()
            .filter(|name| !has_trigger(name))
            .collect(),
    })
}
