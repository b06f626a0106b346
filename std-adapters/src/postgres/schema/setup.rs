//! Setup: the table and everything around it, made or completed in one transaction.

use std::fmt;

use postgres::{Client, GenericClient};

use super::{
    inspect::inspect,
    privileges::privileges,
    sql::{
        COMMENTS, CREATE_TABLE, CREATE_TRIGGER, CREATE_WRITERS_TABLE, DROP_TRIGGER, INDEXES,
        MIGRATIONS, RC_TRIGGER_SQL, TABLE, TRIGGER, TRIGGER_FUNCTION, WRITERS_TABLE, grant_sql,
        grant_writers_sql,
    },
};

/// What setup changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupOutcome {
    /// One line per change; empty when the schema was already complete.
    pub changes: Vec<String>,
    /// The role granted to, if any.
    pub granted_to: Option<String>,
}

/// Why setup did nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The database refused a statement (the transaction was rolled back).
    Database(postgres::Error),
    /// `--grant-to` named a role that owns the table (directly or through membership):
    /// granting it DML would change nothing, and it should not be the application's role.
    RoleOwnsTable(String),
    /// After setup the schema is still not complete.
    StillIncomplete(Vec<String>),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Database(e) => {
                write!(f, "the database refused the setup (nothing changed): {e}")?;
                // The driver's own text says only "db error": the server's message follows.
                match std::error::Error::source(e) {
                    Some(cause) => write!(f, ": {cause}"),
                    None => Ok(()),
                }
            }
            SetupError::RoleOwnsTable(role) => write!(
                f,
                "role {role} owns {TABLE} (directly or through membership); grant to an application role that does not"
            ),
            SetupError::StillIncomplete(problems) => {
                write!(
                    f,
                    "the schema is still incomplete after setup: {}",
                    problems.join("; ")
                )
            }
        }
    }
}

impl std::error::Error for SetupError {}

impl From<postgres::Error> for SetupError {
    fn from(e: postgres::Error) -> Self {
        SetupError::Database(e)
    }
}

/// Creates or completes the schema, and grants `grant_to` its DML privileges, in one
/// transaction: all of it or nothing. Idempotent.
pub fn setup(client: &mut Client, grant_to: Option<&str>) -> Result<SetupOutcome, SetupError> {
    let mut tx = client.transaction()?;
    // One setup at a time, whoever runs it.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('rc_circuit_breakers', 0))",
        &[],
    )?;
    let before = inspect(&mut tx)?;
    let mut changes = Vec::new();
    if !before.table {
        tx.batch_execute(CREATE_TABLE)?;
        changes.push(format!("created table {TABLE}"));
    } else {
        for (column, add) in MIGRATIONS {
            if !has_column(&mut tx, column)? {
                tx.batch_execute(add)?;
                changes.push(format!("added column {column}"));
            }
        }
        if !before.primary_key {
            tx.batch_execute(
                "UPDATE public.rc_circuit_breakers SET namespace = 'default' WHERE namespace IS NULL;
                 ALTER TABLE public.rc_circuit_breakers DROP CONSTRAINT IF EXISTS rc_circuit_breakers_pkey;
                 ALTER TABLE public.rc_circuit_breakers ADD CONSTRAINT rc_circuit_breakers_pkey PRIMARY KEY (resource_key, namespace)",
            )?;
            changes.push("set the primary key to (resource_key, namespace)".to_owned());
        }
    }
    for (name, create) in INDEXES {
        tx.batch_execute(create)?;
        if before.missing_indexes.contains(&name) {
            changes.push(format!("created index {name}"));
        }
    }
    tx.batch_execute(TRIGGER_FUNCTION)?;
    tx.batch_execute(DROP_TRIGGER)?;
    tx.batch_execute(CREATE_TRIGGER)?;
    if !before.trigger {
        changes.push(format!("created trigger {TRIGGER}"));
    }
    tx.batch_execute(CREATE_WRITERS_TABLE)?;
    if !before.writers_table {
        changes.push(format!("created table {WRITERS_TABLE}"));
    }
    for sql in RC_TRIGGER_SQL {
        tx.batch_execute(sql)?;
    }
    changes.extend(
        before
            .missing_rc_triggers
            .iter()
            .map(|name| format!("created trigger {name}")),
    );
    for comment in COMMENTS {
        tx.batch_execute(comment)?;
    }
    if let Some(role) = grant_to {
        let owns: bool = tx
            .query_one(
                "SELECT pg_has_role($1, c.relowner, 'USAGE') FROM pg_class c
                 WHERE c.oid = 'public.rc_circuit_breakers'::regclass",
                &[&role],
            )?
            .get(0);
        if owns {
            return Err(SetupError::RoleOwnsTable(role.to_owned()));
        }
        tx.batch_execute(&grant_sql(role))?;
        tx.batch_execute(&grant_writers_sql(role))?;
    }
    let after = inspect(&mut tx)?;
    if !after.complete() {
        return Err(SetupError::StillIncomplete(after.problems()));
    }
    if let Some(role) = grant_to {
        let missing = privileges(&mut tx, Some(role))?.missing;
        if !missing.is_empty() {
            return Err(SetupError::StillIncomplete(vec![format!(
                "{role} lacks {}",
                missing.join(", ")
            )]));
        }
    }
    tx.commit()?;
    Ok(SetupOutcome {
        changes,
        granted_to: grant_to.map(str::to_owned),
    })
}

fn has_column(client: &mut impl GenericClient, column: &str) -> Result<bool, postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'rc_circuit_breakers' AND column_name = $1)",
            &[&column],
        )?
        .get(0))
}
