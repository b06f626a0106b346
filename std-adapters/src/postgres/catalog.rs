//! What the schema checks need of a client: the rows a statement returns. A blocking client
//! is one; the store's worker is another, which runs each statement under its start-up
//! deadline. Statements go unprepared (one round trip each), so the checks also work through
//! a pooler in transaction mode.

use postgres::{
    GenericClient, Row,
    types::{ToSql, Type},
};

/// Something that runs a statement and returns its rows.
pub(crate) trait Catalog {
    /// Why a statement got no rows back.
    type Error;

    /// The rows `sql` returns with `params`, each a `text`.
    fn rows(&mut self, sql: &str, params: &[&str]) -> Result<Vec<Row>, Self::Error>;

    /// The boolean in the first column of the first row (`false` without a row).
    fn flag(&mut self, sql: &str, params: &[&str]) -> Result<bool, Self::Error> {
        Ok(self
            .rows(sql, params)?
            .first()
            .is_some_and(|row| row.get::<_, bool>(0)))
    }
}

impl<C: GenericClient> Catalog for C {
    type Error = postgres::Error;

    fn rows(&mut self, sql: &str, params: &[&str]) -> Result<Vec<Row>, Self::Error> {
        self.query_typed(sql, &text_params(params))
    }
}

/// `params` as typed parameters, each a `text`.
pub(crate) fn text_params<'a>(params: &'a [&'a str]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|param| (param as &(dyn ToSql + Sync), Type::TEXT))
        .collect()
}
