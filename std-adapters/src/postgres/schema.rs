//! The table `rc_circuit_breakers`, exactly as the Python package `resilient-circuit` makes it,
//! so Rust and Python services share it.

use std::fmt;

use postgres::{Client, GenericClient};

use super::catalog::Catalog;

/// The table.
pub const TABLE: &str = "public.rc_circuit_breakers";

/// The table as the Python package creates it (0.8.6), plus this crate's three defaulted
/// columns (Python writers need not know them).
const CREATE_TABLE: &str = "CREATE TABLE public.rc_circuit_breakers (
    resource_key  character varying(255) NOT NULL,
    state         character varying(50)  NOT NULL,
    failure_count integer DEFAULT 0 NOT NULL,
    open_until    timestamp with time zone,
    execution_log jsonb,
    created_at    timestamp with time zone DEFAULT now(),
    updated_at    timestamp with time zone DEFAULT now(),
    namespace     character varying(255) DEFAULT 'default'::character varying NOT NULL,
    rc_epoch        bigint DEFAULT 0 NOT NULL,
    rc_probes       integer DEFAULT 0 NOT NULL,
    rc_probes_until timestamp with time zone,
    CONSTRAINT rc_circuit_breakers_pkey PRIMARY KEY (resource_key, namespace)
)";

/// Columns a table made by the Python package (or an older release of it) may lack, and how to
/// add them. The last three are this crate's: defaulted, so Python writers need not know them.
const MIGRATIONS: [(&str, &str); 7] = [
    (
        "namespace",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN namespace character varying(255) DEFAULT 'default'::character varying NOT NULL",
    ),
    (
        "execution_log",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN execution_log jsonb",
    ),
    (
        "created_at",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN created_at timestamp with time zone DEFAULT now()",
    ),
    (
        "updated_at",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN updated_at timestamp with time zone DEFAULT now()",
    ),
    (
        "rc_epoch",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN rc_epoch bigint DEFAULT 0 NOT NULL",
    ),
    (
        "rc_probes",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN rc_probes integer DEFAULT 0 NOT NULL",
    ),
    (
        "rc_probes_until",
        "ALTER TABLE public.rc_circuit_breakers ADD COLUMN rc_probes_until timestamp with time zone",
    ),
];

/// The six indexes, by name.
pub const INDEXES: [(&str, &str); 6] = [
    (
        "idx_rc_circuit_breakers_key_namespace",
        "CREATE INDEX IF NOT EXISTS idx_rc_circuit_breakers_key_namespace ON public.rc_circuit_breakers USING btree (resource_key, namespace)",
    ),
    (
        "idx_rc_circuit_breakers_key_state",
        "CREATE INDEX IF NOT EXISTS idx_rc_circuit_breakers_key_state ON public.rc_circuit_breakers USING btree (resource_key, state)",
    ),
    (
        "idx_rc_circuit_breakers_namespace",
        "CREATE INDEX IF NOT EXISTS idx_rc_circuit_breakers_namespace ON public.rc_circuit_breakers USING btree (namespace)",
    ),
    (
        "idx_rc_circuit_breakers_open_until",
        "CREATE INDEX IF NOT EXISTS idx_rc_circuit_breakers_open_until ON public.rc_circuit_breakers USING btree (open_until) WHERE (open_until IS NOT NULL)",
    ),
    (
        "idx_rc_circuit_breakers_state",
        "CREATE INDEX IF NOT EXISTS idx_rc_circuit_breakers_state ON public.rc_circuit_breakers USING btree (state)",
    ),
    (
        "idx_rc_circuit_breakers_state_updated",
        "CREATE INDEX IF NOT EXISTS idx_rc_circuit_breakers_state_updated ON public.rc_circuit_breakers USING btree (state, updated_at DESC)",
    ),
];

/// The trigger keeping `updated_at` current.
pub const TRIGGER: &str = "update_rc_circuit_breakers_updated_at";

const TRIGGER_FUNCTION: &str = "CREATE OR REPLACE FUNCTION public.update_rc_circuit_breakers_updated_at_column() RETURNS trigger
    LANGUAGE plpgsql SET search_path TO 'public'
    AS $$ BEGIN NEW.updated_at = NOW(); RETURN NEW; END; $$";

const DROP_TRIGGER: &str =
    "DROP TRIGGER IF EXISTS update_rc_circuit_breakers_updated_at ON public.rc_circuit_breakers";

const CREATE_TRIGGER: &str = "CREATE TRIGGER update_rc_circuit_breakers_updated_at BEFORE UPDATE ON public.rc_circuit_breakers
    FOR EACH ROW WHEN ((old.* IS DISTINCT FROM new.*))
    EXECUTE FUNCTION public.update_rc_circuit_breakers_updated_at_column()";

/// This crate's table of writers: the last batch each store wrote and the keys it wrote, so a
/// batch whose reply was lost is recognised after a reconnection and never applied twice.
pub const WRITERS_TABLE: &str = "public.rc_circuit_breaker_writers";

const CREATE_WRITERS_TABLE: &str = "CREATE TABLE IF NOT EXISTS public.rc_circuit_breaker_writers (
    writer        text PRIMARY KEY,
    batch         bigint NOT NULL,
    namespaces    text[] DEFAULT '{}' NOT NULL,
    resource_keys text[] DEFAULT '{}' NOT NULL,
    written_at    timestamp with time zone DEFAULT now() NOT NULL
)";

/// This crate's triggers on the table: `rc_circuit_breakers_rc_period` starts a new period
/// (bumps `rc_epoch`, frees the probe slots) when a writer that does not know the column (the
/// Python package) changes the state; `rc_circuit_breakers_rc_notify` tells listeners of every
/// change of state or period, with `pg_notify`.
pub const RC_TRIGGERS: [&str; 2] = [
    "rc_circuit_breakers_rc_period",
    "rc_circuit_breakers_rc_notify",
];

/// The channel `rc_circuit_breakers_rc_notify` notifies, with the payload
/// `<xid>:<namespace length>:<namespace><resource_key>` (the writing transaction's id, as the
/// row's `xmin` shows it).
pub const NOTIFY_CHANNEL: &str = "rc_circuit_breakers";

const RC_TRIGGER_SQL: [&str; 6] = [
    "CREATE OR REPLACE FUNCTION public.rc_circuit_breakers_rc_period() RETURNS trigger
    LANGUAGE plpgsql SET search_path TO 'public'
    AS $$ BEGIN
        IF NEW.state IS DISTINCT FROM OLD.state AND NEW.rc_epoch = OLD.rc_epoch THEN
            NEW.rc_epoch := OLD.rc_epoch + 1;
            NEW.rc_probes := 0;
            NEW.rc_probes_until := NULL;
        END IF;
        RETURN NEW;
    END; $$",
    "CREATE OR REPLACE FUNCTION public.rc_circuit_breakers_rc_notify() RETURNS trigger
    LANGUAGE plpgsql SET search_path TO 'public'
    AS $$ BEGIN
        IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state OR NEW.rc_epoch IS DISTINCT FROM OLD.rc_epoch THEN
            PERFORM pg_notify('rc_circuit_breakers',
                (txid_current() % 4294967296)::text || ':' || length(NEW.namespace)::text || ':' || NEW.namespace || NEW.resource_key);
        END IF;
        RETURN NULL;
    END; $$",
    "DROP TRIGGER IF EXISTS rc_circuit_breakers_rc_period ON public.rc_circuit_breakers",
    "CREATE TRIGGER rc_circuit_breakers_rc_period BEFORE UPDATE ON public.rc_circuit_breakers
    FOR EACH ROW EXECUTE FUNCTION public.rc_circuit_breakers_rc_period()",
    "DROP TRIGGER IF EXISTS rc_circuit_breakers_rc_notify ON public.rc_circuit_breakers",
    "CREATE TRIGGER rc_circuit_breakers_rc_notify AFTER INSERT OR UPDATE ON public.rc_circuit_breakers
    FOR EACH ROW EXECUTE FUNCTION public.rc_circuit_breakers_rc_notify()",
];

const COMMENTS: [&str; 9] = [
    "COMMENT ON TABLE public.rc_circuit_breakers IS 'Circuit breaker state storage with performance optimizations'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.state IS 'Circuit breaker state: CLOSED, OPEN or HALF_OPEN'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.open_until IS 'When an OPEN circuit lets calls through again (UTC)'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.failure_count IS 'Consecutive failures'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.execution_log IS 'Recent outcomes, oldest first: true = success'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.namespace IS 'Namespace separating services that share the table'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.rc_epoch IS 'resilient-circuit (Rust): period number, bumped by every transition'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.rc_probes IS 'resilient-circuit (Rust): HALF_OPEN probes admitted and not yet reported'",
    "COMMENT ON COLUMN public.rc_circuit_breakers.rc_probes_until IS 'resilient-circuit (Rust): when unreported probes are presumed lost'",
];

/// The column types the store insists on: the Python package's readiness rule, plus this
/// crate's three defaulted columns.
const REQUIRED_COLUMNS: [(&str, &str); 9] = [
    ("resource_key", "character varying"),
    ("state", "character varying"),
    ("namespace", "character varying"),
    ("failure_count", "integer"),
    ("open_until", "timestamp with time zone"),
    ("execution_log", "jsonb"),
    ("rc_epoch", "bigint"),
    ("rc_probes", "integer"),
    ("rc_probes_until", "timestamp with time zone"),
];

/// `role` as a quoted SQL identifier.
pub fn quote_ident(role: &str) -> String {
    format!("\"{}\"", role.replace('"', "\"\""))
}

/// The grant `pg-setup --grant-to role` runs.
pub fn grant_sql(role: &str) -> String {
    format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON public.rc_circuit_breakers TO {}",
        quote_ident(role)
    )
}

/// The grant on this crate's writers table that `pg-setup --grant-to role` runs too.
fn grant_writers_sql(role: &str) -> String {
    format!(
        "GRANT SELECT, INSERT, UPDATE ON public.rc_circuit_breaker_writers TO {}",
        quote_ident(role)
    )
}

/// Every statement setup may run on a database without the table, in order (for
/// `pg-setup --dry-run`; on an existing table, setup adds only what is missing).
pub fn setup_sql(grant_to: Option<&str>) -> Vec<String> {
    let mut sql = vec![CREATE_TABLE.to_owned()];
    sql.extend(INDEXES.iter().map(|(_, create)| (*create).to_owned()));
    sql.extend([TRIGGER_FUNCTION, DROP_TRIGGER, CREATE_TRIGGER].map(str::to_owned));
    sql.push(CREATE_WRITERS_TABLE.to_owned());
    sql.extend(RC_TRIGGER_SQL.map(str::to_owned));
    sql.extend(COMMENTS.iter().map(|c| (*c).to_owned()));
    sql.extend(grant_to.map(grant_sql));
    sql.extend(grant_to.map(grant_writers_sql));
    sql
}

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
    /// This crate's triggers ([`RC_TRIGGERS`]) that are missing.
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

/// Every privilege the store needs (and the Python package, which also deletes rows), on each
/// object it uses: `(privilege, object)`.
const NEEDED: [(&str, &str); 8] = [
    ("USAGE", "schema public"),
    ("SELECT", TABLE),
    ("INSERT", TABLE),
    ("UPDATE", TABLE),
    ("DELETE", TABLE),
    ("SELECT", WRITERS_TABLE),
    ("INSERT", WRITERS_TABLE),
    ("UPDATE", WRITERS_TABLE),
];

/// A role's privileges on the objects the store uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// What the role lacks, each as `PRIVILEGE on OBJECT` (`INSERT on
    /// public.rc_circuit_breaker_writers`), in a fixed order.
    pub missing: Vec<String>,
}

/// Which privileges the store needs that `role` lacks, on the table, the writers table and the
/// schema; `None` for the role connected.
///
/// ```no_run
/// use resilient_circuit_std::postgres::{DbSettings, privileges};
///
/// let mut client = DbSettings::from_env()?.connect()?;
/// let lacking = privileges(&mut client, Some("app_rw"))?.missing;
/// assert!(lacking.is_empty(), "app_rw lacks {}", lacking.join(", "));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn privileges(
    client: &mut impl GenericClient,
    role: Option<&str>,
) -> Result<Privileges, postgres::Error> {
    privileges_with(client, role)
}

/// [`privileges`] through any [`Catalog`].
pub(crate) fn privileges_with<C: Catalog>(
    client: &mut C,
    role: Option<&str>,
) -> Result<Privileges, C::Error> {
    let role: String = match role {
        Some(role) => role.to_owned(),
        None => client
            .rows("SELECT current_user::text", &[])?
            .first()
            .map(|row| row.get(0))
            .unwrap_or_default(),
    };
    let mut missing = Vec::new();
    for (privilege, object) in NEEDED {
        let has = match object.strip_prefix("schema ") {
            Some(schema) => client.flag(
                "SELECT has_schema_privilege($1, $2, $3)",
                &[&role, schema, privilege],
            )?,
            None => client.flag(
                "SELECT has_table_privilege($1, $2, $3)",
                &[&role, object, privilege],
            )?,
        };
        if !has {
            missing.push(format!("{privilege} on {object}"));
        }
    }
    Ok(Privileges { missing })
}
