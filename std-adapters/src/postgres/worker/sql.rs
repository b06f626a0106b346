//! The worker's statements, as text: each with the types of its parameters, for a statement
//! sent unprepared.

use tokio_postgres::types::Type;

/// The longest `execution_log` read, as text: a window of 1024 outcomes takes about 7 KiB; a
/// longer one (another writer's, or anyone's with the privilege) is read as unreadable, not
/// fetched.
const MAX_LOG_TEXT: usize = 65_536;

const COLUMNS: [&str; 7] = [
    "r.state",
    "r.failure_count",
    "r.open_until",
    "LOG",
    "r.rc_epoch",
    "r.rc_probes",
    "r.rc_probes_until",
];

/// The rows of several keys in one statement, with the server's `now()`: one result row per
/// key ($1 namespaces, $2 resource keys, $3 the versions already known). A key's columns are
/// sent only when its row is not at the known version; a key without a row has no version.
/// `xmin`, the transaction that wrote this version of the row, identifies the version: every
/// write, by any writer, makes a new one.
fn read_sql() -> String {
    let log = format!(
        "CASE WHEN octet_length(r.execution_log::text) <= {MAX_LOG_TEXT} THEN r.execution_log::text ELSE 'longer than {MAX_LOG_TEXT} bytes' END"
    );
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|column| {
            let column = if *column == "LOG" {
                log.as_str()
            } else {
                column
            };
            format!("CASE WHEN c.changed THEN {column} END")
        })
        .collect();
    format!(
        "SELECT now(), k.i, r.xmin::text::bigint, {}
         FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS k(ns, rk, known, i)
         LEFT JOIN public.rc_circuit_breakers r ON r.resource_key = k.rk AND r.namespace = k.ns
         CROSS JOIN LATERAL (SELECT r.xmin::text::bigint IS DISTINCT FROM k.known AS changed) AS c",
        columns.join(", ")
    )
}

/// Rows for keys that have none ($1 namespaces, $2 resource keys), as a fresh CLOSED.
const INSERT_SQL: &str = "INSERT INTO public.rc_circuit_breakers
      (resource_key, namespace, state, failure_count, open_until, execution_log, rc_epoch, rc_probes, rc_probes_until)
    SELECT k.rk, k.ns, 'CLOSED', 0, NULL, '[]'::jsonb, 0, 0, NULL FROM unnest($1::text[], $2::text[]) AS k(ns, rk)
    ON CONFLICT (resource_key, namespace) DO NOTHING";

/// The compare-and-swap of one batch, for many keys in one statement ($1 to $11 one array
/// element per key): each key's new values are written only if its row is still the version
/// read ($3), and, unless unguarded ($11), only if it is not a live OPEN by the server's clock.
/// A row locked elsewhere is skipped, not waited for: the others are written at once.
///
/// Exactly once: batch $13 of writer $12 is applied only if the writer's last batch is older
/// (its row is locked first, so that of two copies of one batch, the second waits for the
/// first and then finds it applied, or fenced off). The first row returned is the writer's
/// record as it was (last batch, and the keys it wrote; all null without a writer row), with
/// the server's `now()`; then each key written, with its new version (`skipped` false); then
/// each key whose row was locked elsewhere (`skipped` true). A key whose row is missing is
/// neither: it is read again, which makes its row.
const SWAP_SQL: &str = "WITH w AS (
      SELECT batch, namespaces, resource_keys FROM public.rc_circuit_breaker_writers
       WHERE writer = $12 FOR UPDATE
    ), b AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[],
                           $6::timestamptz[], $7::text[], $8::int8[], $9::int4[],
                           $10::timestamptz[], $11::bool[])
        AS b(ns, rk, version, state, failure_count, open_until, execution_log, epoch, probes,
             probes_until, unguarded)
       WHERE EXISTS (SELECT 1 FROM w WHERE w.batch < $13)
    ), locked AS (
      -- A row another transaction holds is skipped: its key is that key's problem alone.
      SELECT r.namespace, r.resource_key FROM public.rc_circuit_breakers r
        JOIN b ON r.resource_key = b.rk AND r.namespace = b.ns
       ORDER BY r.namespace, r.resource_key
         FOR UPDATE OF r SKIP LOCKED
    ), written AS (
      UPDATE public.rc_circuit_breakers r SET state = b.state, failure_count = b.failure_count,
             open_until = b.open_until, execution_log = b.execution_log::jsonb,
             rc_epoch = b.epoch, rc_probes = b.probes, rc_probes_until = b.probes_until,
             updated_at = now()
        FROM b, locked l
       WHERE r.resource_key = b.rk AND r.namespace = b.ns
         AND l.resource_key = b.rk AND l.namespace = b.ns
         AND r.xmin = b.version::xid
         AND (b.unguarded OR NOT (r.state = 'OPEN' AND COALESCE(r.open_until > now(), false)))
      RETURNING r.namespace, r.resource_key, r.xmin::text::bigint AS version
    ), mark AS (
      UPDATE public.rc_circuit_breaker_writers
         SET batch = $13,
             namespaces = COALESCE((SELECT array_agg(namespace::text ORDER BY namespace, resource_key) FROM written), '{}'),
             resource_keys = COALESCE((SELECT array_agg(resource_key::text ORDER BY namespace, resource_key) FROM written), '{}'),
             written_at = now()
       WHERE writer = $12 AND batch < $13
    )
    SELECT now(), NULL::text, NULL::text, NULL::bigint, w.batch, w.namespaces, w.resource_keys,
           NULL::bool AS skipped
      FROM (SELECT 1) AS one LEFT JOIN w ON true
    UNION ALL SELECT now(), namespace::text, resource_key::text, version, NULL, NULL, NULL, false
      FROM written
    UNION ALL SELECT now(), b.ns, b.rk, NULL, NULL, NULL, NULL, true FROM b
     WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.namespace = b.ns AND l.resource_key = b.rk)
       AND EXISTS (SELECT 1 FROM public.rc_circuit_breakers r
                    WHERE r.namespace = b.ns AND r.resource_key = b.rk)";

/// Registers writer $1, whose batches so far are numbered up to $2 (a new writer: 0), or
/// refreshes its row; returns a row if it was not registered. It takes over the row of a writer that has not written for
/// a day (every live writer refreshes its row hourly: see [`TOUCH_SQL`]), so the table holds
/// about as many rows as writers ran within a day, with no privilege but UPDATE and INSERT.
const REGISTER_SQL: &str = "WITH stale AS (
      SELECT writer FROM public.rc_circuit_breaker_writers
       WHERE written_at < now() - interval '1 day' AND writer <> $1
       ORDER BY written_at LIMIT 1 FOR UPDATE SKIP LOCKED
    ), taken AS (
      UPDATE public.rc_circuit_breaker_writers w
         SET writer = $1, batch = $2, namespaces = '{}', resource_keys = '{}', written_at = now()
        FROM stale
       WHERE w.writer = stale.writer
         AND NOT EXISTS (SELECT 1 FROM public.rc_circuit_breaker_writers WHERE writer = $1)
      RETURNING w.writer
    ), inserted AS (
      INSERT INTO public.rc_circuit_breaker_writers (writer, batch)
      SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM taken)
      ON CONFLICT (writer) DO UPDATE SET written_at = now()
      RETURNING writer, xmax = 0 AS fresh
    )
    SELECT writer FROM taken UNION ALL SELECT writer FROM inserted WHERE fresh";

/// Refreshes writer $1's row, so that no new writer takes it over while this one lives.
const TOUCH_SQL: &str =
    "UPDATE public.rc_circuit_breaker_writers SET written_at = now() WHERE writer = $1";

/// Settles batch $2 of writer $1, in doubt, locking only the writer's row: if the writer's last
/// batch is older, the batch was not applied, and never will be (the record moves to $2, so a
/// copy still in flight finds it applied and changes nothing). Returns the record as it was
/// (all null without a writer row), with the server's `now()`.
const FENCE_SQL: &str = "WITH w AS (
      SELECT batch, namespaces, resource_keys FROM public.rc_circuit_breaker_writers
       WHERE writer = $1 FOR UPDATE
    ), fence AS (
      UPDATE public.rc_circuit_breaker_writers
         SET batch = $2, namespaces = '{}', resource_keys = '{}', written_at = now()
       WHERE writer = $1 AND batch < $2
    )
    SELECT now(), w.batch, w.namespaces, w.resource_keys FROM (SELECT 1) AS one LEFT JOIN w ON true";

/// The worker's statements.
#[derive(Clone, Copy)]
pub(super) enum Which {
    Read,
    Insert,
    Swap,
    Register,
    Fence,
    Touch,
    Now,
}

impl Which {
    pub(super) const ALL: [Which; 7] = [
        Which::Read,
        Which::Insert,
        Which::Swap,
        Which::Register,
        Which::Fence,
        Which::Touch,
        Which::Now,
    ];

    pub(super) fn sql(self) -> &'static str {
        static READ: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match self {
            Which::Read => READ.get_or_init(read_sql),
            Which::Insert => INSERT_SQL,
            Which::Swap => SWAP_SQL,
            Which::Register => REGISTER_SQL,
            Which::Fence => FENCE_SQL,
            Which::Touch => TOUCH_SQL,
            Which::Now => "SELECT now()",
        }
    }

    /// The parameters' types, for a statement sent unprepared.
    pub(super) fn types(self) -> &'static [Type] {
        const SWAP: [Type; 13] = [
            Type::TEXT_ARRAY,
            Type::TEXT_ARRAY,
            Type::TEXT_ARRAY,
            Type::TEXT_ARRAY,
            Type::INT4_ARRAY,
            Type::TIMESTAMPTZ_ARRAY,
            Type::TEXT_ARRAY,
            Type::INT8_ARRAY,
            Type::INT4_ARRAY,
            Type::TIMESTAMPTZ_ARRAY,
            Type::BOOL_ARRAY,
            Type::TEXT,
            Type::INT8,
        ];
        match self {
            Which::Read => &[Type::TEXT_ARRAY, Type::TEXT_ARRAY, Type::INT8_ARRAY],
            Which::Insert => &[Type::TEXT_ARRAY, Type::TEXT_ARRAY],
            Which::Swap => &SWAP,
            Which::Register | Which::Fence => &[Type::TEXT, Type::INT8],
            Which::Touch => &[Type::TEXT],
            Which::Now => &[],
        }
    }
}
