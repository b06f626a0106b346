//! The privileges a role needs to use the table.

use postgres::GenericClient;

use super::sql::{TABLE, WRITERS_TABLE};
use crate::postgres::catalog::Catalog;

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
/// use resilient_circuit_std::postgres::{DbSettings, schema::privileges};
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
