//! The one SQL interface the store is written against, and its two backends:
//! - SQLite: one connection behind a mutex (the single-machine default; SQLite allows one
//!   writer at a time anyway), statements cached by rusqlite;
//! - PostgreSQL: a bounded r2d2 pool of blocking clients (every store call already runs on
//!   a blocking thread), with connect, checkout and statement timeouts, and prepared
//!   statements cached per connection.
//!
//! Statements are written once, in SQL both engines accept, with SQLite's `?N` (or bare
//! `?`) placeholders; the PostgreSQL backend rewrites them to `$N`. The few statements
//! that cannot be portable ask [`Tx::dialect`]. Values cross the boundary as [`Value`]
//! and rows come back whole as [`Row`]s (every query here is bounded by a `LIMIT` or a key).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::StoreError;

/// How long a request waits for a pooled PostgreSQL connection before it is answered
/// "unavailable" (503) rather than queueing without bound.
pub const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening one PostgreSQL connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one PostgreSQL statement may run.
pub const STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// Connections per replica. Each serves one blocking store call at a time; the HTTP
/// edge's blocking threads beyond this wait (up to [`POOL_CHECKOUT_TIMEOUT`]).
pub const POOL_SIZE: u32 = 16;

/// A bound parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}
impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Self {
        v.as_deref().into()
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Builds a parameter slice: `args![id, name, 3_i64]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::sql::Value::from($v)),*] as &[$crate::store::sql::Value] };
}
pub(crate) use args;

/// Reads a typed value out of a column.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as `T`; a missing column or another type is corrupt data.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self.0.get(i).ok_or_else(|| StoreError::Corrupt(format!("row has no column {i}")))?;
        T::from_value(v).ok_or_else(|| StoreError::Corrupt(format!("column {i} holds {v:?}, not a {}", std::any::type_name::<T>())))
    }
}

/// Which engine a statement runs on, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection inside (or, for reads, outside) a transaction.
pub trait Tx {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

// ---- SQLite ----

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

struct SqliteTx<'c>(&'c rusqlite::Connection);

impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

// ---- PostgreSQL ----

mod pg_types {
    use super::Value;
    use bytes::BytesMut;
    use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
    use std::error::Error;

    type BoxError = Box<dyn Error + Sync + Send>;

    impl ToSql for Value {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            match self {
                Value::Null => Ok(IsNull::Yes),
                Value::Int(i) => match *ty {
                    Type::INT8 => i.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                    Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                    Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                    Type::BOOL => (*i != 0).to_sql(ty, out),
                    _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
                },
                Value::Real(f) => match *ty {
                    Type::FLOAT8 => f.to_sql(ty, out),
                    Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                    _ => Err(format!("cannot bind a real to a {ty} parameter").into()),
                },
                Value::Text(s) => s.as_str().to_sql(ty, out),
                Value::Blob(b) => b.as_slice().to_sql(ty, out),
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    impl<'a> FromSql<'a> for Value {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            Ok(match *ty {
                Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
                Type::INT4 => Value::Int(i64::from(i32::from_sql(ty, raw)?)),
                Type::INT2 => Value::Int(i64::from(i16::from_sql(ty, raw)?)),
                Type::BOOL => Value::Int(i64::from(bool::from_sql(ty, raw)?)),
                Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
                Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
                Type::BYTEA => Value::Blob(Vec::<u8>::from_sql(ty, raw)?),
                _ => Value::Text(String::from_sql(ty, raw)?),
            })
        }

        fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
            Ok(Value::Null)
        }

        fn accepts(_: &Type) -> bool {
            true
        }
    }
}

/// Rewrites `?N` and bare `?` placeholders to PostgreSQL's `$N` (outside string literals).
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut in_literal = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_literal = !in_literal;
            out.push(c);
        } else if c == '?' && !in_literal {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            if digits.is_empty() {
                out.push_str(&format!("${next}"));
                next += 1;
            } else {
                out.push('$');
                out.push_str(&digits);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A pooled PostgreSQL connection and its prepared statements (keyed by the SQL as written).
pub struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// Opens PostgreSQL connections for the pool.
#[derive(Debug)]
pub struct PgManager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        let client = self.config.connect(postgres::NoTls)?;
        Ok(PgConn { client, statements: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// SQLSTATE classes that mean "the database is not reachable right now" (connection
/// exceptions, shutdown, too many connections, statement timeout): answered 503 with
/// Retry-After, never 500.
fn is_unavailable(e: &postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57") || c == "53300"
        }
        // No SQLSTATE: an I/O error, a closed connection or a timeout.
        None => e.as_db_error().is_none(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        if is_unavailable(&e) {
            let detail = e.source().map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
            StoreError::Unavailable(detail)
        } else {
            StoreError::Postgres(e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{}: {}", d.code().code(), d.message())))
        }
    }
}

struct PgTx<'c, C: postgres::GenericClient> {
    client: &'c mut C,
    statements: &'c mut HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> PgTx<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client.prepare(&postgres_placeholders(sql))?;
        self.statements.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect()
}

impl<C: postgres::GenericClient> Tx for PgTx<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        Ok(self.client.execute(&stmt, &pg_params(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let rows = self.client.query(&stmt, &pg_params(params))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(row.try_get::<_, Value>(i)?);
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

// ---- the handle ----

/// The database behind a store; clone freely.
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(Arc<PgPool>),
}

/// The PostgreSQL pool. The blocking client closes its connection with its own small
/// runtime, which must not start on a thread driving async tasks (it panics there): the
/// last handle, often dropped as `serve` ends inside its runtime, closes the pool on a
/// plain thread.
pub struct PgPool(Option<r2d2::Pool<PgManager>>);

impl std::ops::Deref for PgPool {
    type Target = r2d2::Pool<PgManager>;
    fn deref(&self) -> &Self::Target {
        // Only `drop` takes the pool out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("the pool is present until dropped"))
    }
}

impl Drop for PgPool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::Builder::new().name("pg-pool-close".into()).spawn(move || drop(pool)).map(|t| t.join());
        }
    }
}

impl Db {
    /// A pool for `url` (`postgres://user:pass@host:port/db`). Connects lazily: a replica
    /// starting while the database is down waits for it rather than failing.
    pub fn postgres(url: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e: postgres::Error| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let options = format!("{} -c statement_timeout={STATEMENT_TIMEOUT_MS}", config.get_options().unwrap_or(""));
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name("drscreen");
        }
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(POOL_CHECKOUT_TIMEOUT)
            // A broken connection is noticed on use (answered 503) and dropped when
            // returned; checking every checkout would cost a round trip per call.
            .test_on_check_out(false)
            .build_unchecked(PgManager { config });
        Ok(Self::Postgres(Arc::new(PgPool(Some(pool)))))
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    fn pg_conn(pool: &r2d2::Pool<PgManager>) -> Result<r2d2::PooledConnection<PgManager>, StoreError> {
        pool.get().map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    /// SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so a read-then-write
    /// inside `f` cannot interleave with another writer.
    pub fn write<T, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, E>) -> Result<T, E> {
        match self {
            Self::Sqlite(conn) => {
                let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
                let tx = guard.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
                let value = f(&mut SqliteTx(&tx))?;
                tx.commit().map_err(StoreError::from)?;
                Ok(value)
            }
            Self::Postgres(pool) => {
                let mut conn = Self::pg_conn(pool)?;
                let PgConn { client, statements } = &mut *conn;
                let mut tx = client.transaction().map_err(StoreError::from)?;
                let value = f(&mut PgTx { client: &mut tx, statements })?;
                tx.commit().map_err(StoreError::from)?;
                Ok(value)
            }
        }
    }

    /// Runs `f` outside an explicit transaction (each statement commits on its own).
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, E>) -> Result<T, E> {
        match self {
            Self::Sqlite(conn) => {
                let guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
                f(&mut SqliteTx(&guard))
            }
            Self::Postgres(pool) => {
                let mut conn = Self::pg_conn(pool)?;
                let PgConn { client, statements } = &mut *conn;
                f(&mut PgTx { client, statements })
            }
        }
    }

    /// Runs a batch of statements (migrations) outside the statement cache.
    pub fn with_postgres_client<T>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match self {
            Self::Postgres(pool) => {
                let mut conn = Self::pg_conn(pool)?;
                conn.statements.clear();
                f(&mut conn.client)
            }
            Self::Sqlite(_) => Err(StoreError::Config("not a PostgreSQL store".into())),
        }
    }

    /// Whether the database answers a trivial query now (for `/readyz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.query("SELECT 1", &[]).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals() {
        assert_eq!(
            postgres_placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12 OR d = ?1"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 OR d = $1"
        );
        assert_eq!(postgres_placeholders("x = ? AND y = ? LIMIT ?"), "x = $1 AND y = $2 LIMIT $3");
        assert_eq!(postgres_placeholders("action LIKE ? ESCAPE '\\' AND z = 'a?b'"), "action LIKE $1 ESCAPE '\\' AND z = 'a?b'");
    }

    #[test]
    fn values_read_back_as_their_types() {
        let row = Row(vec![Value::Int(1), Value::Null, Value::Real(2.5), Value::Text("t".into()), Value::Int(0)]);
        assert_eq!(row.get::<i64>(0).unwrap(), 1);
        assert_eq!(row.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(row.get::<f64>(2).unwrap(), 2.5);
        assert_eq!(row.get::<String>(3).unwrap(), "t");
        assert!(!row.get::<bool>(4).unwrap());
        assert!(row.get::<String>(0).is_err(), "an integer is not text");
        assert!(row.get::<i64>(9).is_err(), "no such column");
    }
}
