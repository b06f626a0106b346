//! The SQL that makes the table, its indexes, triggers and comments, and the writers' table.

/// The table.
pub const TABLE: &str = "public.rc_circuit_breakers";

/// The table as the Python package creates it (0.8.6), plus this crate's three defaulted
/// columns (Python writers need not know them).
pub(super) const CREATE_TABLE: &str = "CREATE TABLE public.rc_circuit_breakers (
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
pub(super) const MIGRATIONS: [(&str, &str); 7] = [
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
pub(super) const INDEXES: [(&str, &str); 6] = [
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

pub(super) const TRIGGER_FUNCTION: &str = "CREATE OR REPLACE FUNCTION public.update_rc_circuit_breakers_updated_at_column() RETURNS trigger
    LANGUAGE plpgsql SET search_path TO 'public'
    AS $$ BEGIN NEW.updated_at = NOW(); RETURN NEW; END; $$";

pub(super) const DROP_TRIGGER: &str =
    "DROP TRIGGER IF EXISTS update_rc_circuit_breakers_updated_at ON public.rc_circuit_breakers";

pub(super) const CREATE_TRIGGER: &str = "CREATE TRIGGER update_rc_circuit_breakers_updated_at BEFORE UPDATE ON public.rc_circuit_breakers
    FOR EACH ROW WHEN ((old.* IS DISTINCT FROM new.*))
    EXECUTE FUNCTION public.update_rc_circuit_breakers_updated_at_column()";

/// This crate's table of writers: the last batch each store wrote and the keys it wrote, so a
/// batch whose reply was lost is recognised after a reconnection and never applied twice.
pub const WRITERS_TABLE: &str = "public.rc_circuit_breaker_writers";

pub(super) const CREATE_WRITERS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS public.rc_circuit_breaker_writers (
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
pub(super) const RC_TRIGGERS: [&str; 2] = [
    "rc_circuit_breakers_rc_period",
    "rc_circuit_breakers_rc_notify",
];

/// The channel `rc_circuit_breakers_rc_notify` notifies, with the payload
/// `<xid>:<namespace length>:<namespace><resource_key>` (the writing transaction's id, as the
/// row's `xmin` shows it).
pub(crate) const NOTIFY_CHANNEL: &str = "rc_circuit_breakers";

pub(super) const RC_TRIGGER_SQL: [&str; 6] = [
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

pub(super) const COMMENTS: [&str; 9] = [
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
pub(super) const REQUIRED_COLUMNS: [(&str, &str); 9] = [
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
pub(super) fn quote_ident(role: &str) -> String {
    format!("\"{}\"", role.replace('"', "\"\""))
}

/// The grant `pg-setup --grant-to role` runs.
pub(super) fn grant_sql(role: &str) -> String {
    format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON public.rc_circuit_breakers TO {}",
        quote_ident(role)
    )
}

/// The grant on this crate's writers table that `pg-setup --grant-to role` runs too.
pub(super) fn grant_writers_sql(role: &str) -> String {
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
