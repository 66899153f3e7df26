//! Why an attempt failed: the server's SQLSTATE or what went wrong on the
//! client's side (a pool timeout, a refused or lost connection), as one
//! class that reports count. Classifying is all it does.

use std::error::Error as StdError;

use serde::{Deserialize, Serialize};

/// Why an attempt failed, classified for reports.
///
/// SQLSTATE-based classes come from the server; the rest are client-side.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorClass {
    /// SQLSTATE 53300: the server refused a connection because `max_connections` was reached.
    TooManyConnections,
    /// SQLSTATE 40P01: the server aborted the transaction to break a deadlock.
    DeadlockDetected,
    /// SQLSTATE 40001: a serializable (or repeatable read) transaction could not be serialized.
    SerializationFailure,
    /// SQLSTATE 55P03: `NOWAIT` / `lock_timeout` could not get a lock.
    LockNotAvailable,
    /// SQLSTATE 57014: the statement was canceled (`statement_timeout` or a cancel request).
    QueryCanceled,
    /// SQLSTATE 23505: a unique constraint was violated.
    UniqueViolation,
    /// SQLSTATE 26000 (a prepared statement the client named does not
    /// exist) or 42P05 (one of that name exists already), holding which: the
    /// client's named prepared statements were made on another server
    /// connection, as through a transaction- or statement-mode PgBouncer
    /// before 1.21 ([`ErrorClass::explanation`]).
    PreparedStatement(String),
    /// Any other SQLSTATE; holds the full five-character code as the server sent it.
    OtherSqlState(String),
    /// Waiting for a pooled connection took longer than the pool's acquire timeout.
    PoolTimeout,
    /// A connection could not be opened for a reason without a SQLSTATE (refused, reset, TLS, ...).
    ConnectionFailed,
    /// An established connection broke in the middle of a transaction (closed, I/O error).
    ConnectionLost,
    /// contend itself ran out of file descriptors (EMFILE/ENFILE) opening a
    /// connection: a client-side limit, not the server refusing. Raise
    /// `ulimit -n` (contend already raises its soft limit to the hard one).
    ClientOutOfFiles,
    /// Anything else (client-side bug, decode error, ...).
    Other,
}

impl ErrorClass {
    /// The class of a SQLSTATE code (five characters, e.g. `"40P01"`); unknown codes become
    /// [`ErrorClass::OtherSqlState`] with the code kept verbatim.
    pub fn from_sqlstate(code: &str) -> ErrorClass {
        match code {
            "53300" => ErrorClass::TooManyConnections,
            "40P01" => ErrorClass::DeadlockDetected,
            "40001" => ErrorClass::SerializationFailure,
            "55P03" => ErrorClass::LockNotAvailable,
            "57014" => ErrorClass::QueryCanceled,
            "23505" => ErrorClass::UniqueViolation,
            "26000" | "42P05" => ErrorClass::PreparedStatement(code.to_string()),
            other => ErrorClass::OtherSqlState(other.to_string()),
        }
    }

    /// Stable machine key used in JSON maps: the SQLSTATE code itself for every SQLSTATE class
    /// (`"53300"`, `"40P01"`, ..., the raw code for [`ErrorClass::OtherSqlState`]) and snake_case
    /// words for the rest (`"pool_timeout"`, `"connection_failed"`, `"connection_lost"`, `"other"`).
    pub fn key(&self) -> String {
        match self {
            ErrorClass::TooManyConnections => "53300".to_string(),
            ErrorClass::DeadlockDetected => "40P01".to_string(),
            ErrorClass::SerializationFailure => "40001".to_string(),
            ErrorClass::LockNotAvailable => "55P03".to_string(),
            ErrorClass::QueryCanceled => "57014".to_string(),
            ErrorClass::UniqueViolation => "23505".to_string(),
            ErrorClass::OtherSqlState(code) | ErrorClass::PreparedStatement(code) => code.clone(),
            ErrorClass::PoolTimeout => "pool_timeout".to_string(),
            ErrorClass::ConnectionFailed => "connection_failed".to_string(),
            ErrorClass::ConnectionLost => "connection_lost".to_string(),
            ErrorClass::ClientOutOfFiles => "too_many_open_files".to_string(),
            ErrorClass::Other => "other".to_string(),
        }
    }

    /// Short human label, e.g. `"deadlock (40P01)"`, `"SQLSTATE XX000 (class XX: internal error)"`,
    /// `"pool timeout"`. Codes of a class without a known name are labelled `"SQLSTATE ZZ001 (class ZZ)"`.
    pub fn label(&self) -> String {
        match self {
            ErrorClass::TooManyConnections => "too many connections (53300)".to_string(),
            ErrorClass::DeadlockDetected => "deadlock (40P01)".to_string(),
            ErrorClass::SerializationFailure => "serialization failure (40001)".to_string(),
            ErrorClass::LockNotAvailable => "lock not available (55P03)".to_string(),
            ErrorClass::QueryCanceled => "query canceled (57014)".to_string(),
            ErrorClass::UniqueViolation => "unique violation (23505)".to_string(),
            ErrorClass::PreparedStatement(code) if code == "42P05" => {
                "prepared statement already exists (42P05)".to_string()
            }
            ErrorClass::PreparedStatement(code) => format!("prepared statement does not exist ({code})"),
            ErrorClass::OtherSqlState(code) => match code.get(..2) {
                Some(class) => match sqlstate_class_name(class) {
                    Some(name) => format!("SQLSTATE {code} (class {class}: {name})"),
                    None => format!("SQLSTATE {code} (class {class})"),
                },
                None => format!("SQLSTATE {code}"),
            },
            ErrorClass::PoolTimeout => "pool timeout".to_string(),
            ErrorClass::ConnectionFailed => "connection failed".to_string(),
            ErrorClass::ConnectionLost => "connection lost".to_string(),
            ErrorClass::ClientOutOfFiles => match open_files_limit() {
                Some(limit) => format!("too many open files in contend (limit {limit})"),
                None => "too many open files in contend".to_string(),
            },
            ErrorClass::Other => "other".to_string(),
        }
    }

    /// One line saying what a class means and what to do, for classes
    /// whose cause is not in their label.
    pub fn explanation(&self) -> Option<&'static str> {
        match self {
            ErrorClass::PreparedStatement(_) => Some(
                "named prepared statements do not survive a transaction- or statement-mode pooler that hands each transaction another server connection: use --query-mode extended (unnamed statements), or PgBouncer >= 1.21 with max_prepared_statements",
            ),
            _ => None,
        }
    }

    /// Whether retrying the whole transaction is the standard remedy: true for serialization
    /// failures (40001) and deadlocks (40P01), false for everything else.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorClass::SerializationFailure | ErrorClass::DeadlockDetected)
    }

    /// Classifies a tokio-postgres error: by its SQLSTATE when it has one; otherwise
    /// [`ErrorClass::ConnectionLost`] if the connection is closed or an `std::io::Error` is in the
    /// source chain; otherwise [`ErrorClass::Other`].
    ///
    /// tokio-postgres does not expose whether an error came from connecting, so a caller that
    /// gets a non-SQLSTATE error from `connect` should use [`ErrorClass::ConnectionFailed`] itself.
    pub fn from_tokio_postgres(error: &tokio_postgres::Error) -> ErrorClass {
        classify_client_error(
            error.code().map(|state| state.code()),
            error.is_closed(),
            error.source(),
        )
    }

    /// Classifies an sqlx error: database errors by their SQLSTATE (no code: [`ErrorClass::Other`]),
    /// `PoolTimedOut` → [`ErrorClass::PoolTimeout`], `Io`/`Tls`/`Protocol` →
    /// [`ErrorClass::ConnectionLost`], `PoolClosed` → [`ErrorClass::ConnectionFailed`], anything
    /// else → [`ErrorClass::Other`].
    pub fn from_sqlx(error: &sqlx::Error) -> ErrorClass {
        match error {
            sqlx::Error::Database(db) => match db.code() {
                Some(code) => ErrorClass::from_sqlstate(&code),
                None => ErrorClass::Other,
            },
            sqlx::Error::PoolTimedOut => ErrorClass::PoolTimeout,
            sqlx::Error::Io(e) if is_out_of_files(e) => ErrorClass::ClientOutOfFiles,
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => ErrorClass::ConnectionLost,
            sqlx::Error::PoolClosed => ErrorClass::ConnectionFailed,
            _ => ErrorClass::Other,
        }
    }
}

/// The rule behind [`ErrorClass::from_tokio_postgres`], on the parts of an error.
fn classify_client_error(code: Option<&str>, closed: bool, source: Option<&(dyn StdError + 'static)>) -> ErrorClass {
    if let Some(code) = code {
        return ErrorClass::from_sqlstate(code);
    }
    let mut next = source;
    let mut io_in_chain = false;
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if is_out_of_files(io) {
                return ErrorClass::ClientOutOfFiles;
            }
            io_in_chain = true;
            break;
        }
        next = error.source();
    }
    if closed || io_in_chain {
        ErrorClass::ConnectionLost
    } else {
        ErrorClass::Other
    }
}

/// Whether an I/O error is this process (EMFILE) or the system (ENFILE)
/// out of file descriptors.
fn is_out_of_files(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// This process's soft limit on open files (RLIMIT_NOFILE), from
/// /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Standard name of a SQLSTATE class (the code's first two characters), as in PostgreSQL's
/// "Appendix A. Error Codes", shortened for a few common classes.
fn sqlstate_class_name(class: &str) -> Option<&'static str> {
    Some(match class {
        "00" => "successful completion",
        "01" => "warning",
        "02" => "no data",
        "03" => "SQL statement not yet complete",
        "08" => "connection exception",
        "09" => "triggered action exception",
        "0A" => "feature not supported",
        "0B" => "invalid transaction initiation",
        "0F" => "locator exception",
        "0L" => "invalid grantor",
        "0P" => "invalid role specification",
        "0Z" => "diagnostics exception",
        "20" => "case not found",
        "21" => "cardinality violation",
        "22" => "data exception",
        "23" => "integrity constraint violation",
        "24" => "invalid cursor state",
        "25" => "invalid transaction state",
        "26" => "invalid SQL statement name",
        "27" => "triggered data change violation",
        "28" => "invalid authorization",
        "2B" => "dependent privilege descriptors still exist",
        "2D" => "invalid transaction termination",
        "2F" => "SQL routine exception",
        "34" => "invalid cursor name",
        "38" => "external routine exception",
        "39" => "external routine invocation exception",
        "3B" => "savepoint exception",
        "3D" => "invalid catalog name",
        "3F" => "invalid schema name",
        "40" => "transaction rollback",
        "42" => "syntax error or access rule violation",
        "44" => "WITH CHECK OPTION violation",
        "53" => "insufficient resources",
        "54" => "program limit exceeded",
        "55" => "object not in prerequisite state",
        "57" => "operator intervention",
        "58" => "system error",
        "72" => "snapshot failure",
        "F0" => "configuration file error",
        "HV" => "foreign data wrapper error",
        "P0" => "PL/pgSQL error",
        "XX" => "internal error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_the_clients_own_class() {
        for errno in [libc::EMFILE, libc::ENFILE] {
            let io = std::io::Error::from_raw_os_error(errno);
            assert_eq!(
                classify_client_error(None, false, Some(&io)),
                ErrorClass::ClientOutOfFiles
            );
        }
        let reset = std::io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(
            classify_client_error(None, false, Some(&reset)),
            ErrorClass::ConnectionLost
        );
        assert!(ErrorClass::ClientOutOfFiles
            .label()
            .starts_with("too many open files in contend (limit "));
        assert_eq!(ErrorClass::ClientOutOfFiles.key(), "too_many_open_files");
    }

    #[test]
    fn sqlstate_classification() {
        assert_eq!(ErrorClass::from_sqlstate("53300"), ErrorClass::TooManyConnections);
        assert_eq!(ErrorClass::from_sqlstate("40P01"), ErrorClass::DeadlockDetected);
        assert_eq!(ErrorClass::from_sqlstate("40001"), ErrorClass::SerializationFailure);
        assert_eq!(ErrorClass::from_sqlstate("55P03"), ErrorClass::LockNotAvailable);
        assert_eq!(ErrorClass::from_sqlstate("57014"), ErrorClass::QueryCanceled);
        assert_eq!(ErrorClass::from_sqlstate("23505"), ErrorClass::UniqueViolation);
        assert_eq!(
            ErrorClass::from_sqlstate("XX000"),
            ErrorClass::OtherSqlState("XX000".to_string())
        );
        assert_eq!(
            ErrorClass::from_sqlstate("23503"),
            ErrorClass::OtherSqlState("23503".to_string())
        );
    }

    #[test]
    fn keys_and_labels() {
        assert_eq!(ErrorClass::TooManyConnections.key(), "53300");
        assert_eq!(ErrorClass::DeadlockDetected.key(), "40P01");
        assert_eq!(ErrorClass::OtherSqlState("XX000".into()).key(), "XX000");
        assert_eq!(ErrorClass::PoolTimeout.key(), "pool_timeout");
        assert_eq!(ErrorClass::ConnectionFailed.key(), "connection_failed");
        assert_eq!(ErrorClass::ConnectionLost.key(), "connection_lost");
        assert_eq!(ErrorClass::Other.key(), "other");

        assert_eq!(ErrorClass::TooManyConnections.label(), "too many connections (53300)");
        assert_eq!(ErrorClass::DeadlockDetected.label(), "deadlock (40P01)");
        assert_eq!(ErrorClass::QueryCanceled.label(), "query canceled (57014)");
        assert_eq!(
            ErrorClass::OtherSqlState("XX000".into()).label(),
            "SQLSTATE XX000 (class XX: internal error)"
        );
        assert_eq!(
            ErrorClass::OtherSqlState("42P01".into()).label(),
            "SQLSTATE 42P01 (class 42: syntax error or access rule violation)"
        );
        assert_eq!(
            ErrorClass::OtherSqlState("ZZ001".into()).label(),
            "SQLSTATE ZZ001 (class ZZ)"
        );
        assert_eq!(ErrorClass::PoolTimeout.label(), "pool timeout");
        assert_eq!(ErrorClass::ConnectionLost.label(), "connection lost");
    }

    #[test]
    fn retryable_classes() {
        assert!(ErrorClass::SerializationFailure.is_retryable());
        assert!(ErrorClass::DeadlockDetected.is_retryable());
        assert!(!ErrorClass::UniqueViolation.is_retryable());
        assert!(!ErrorClass::LockNotAvailable.is_retryable());
        assert!(!ErrorClass::PoolTimeout.is_retryable());
        assert!(!ErrorClass::OtherSqlState("40002".into()).is_retryable());
    }

    #[test]
    fn client_error_classification() {
        assert_eq!(
            classify_client_error(Some("40001"), true, None),
            ErrorClass::SerializationFailure
        );
        assert_eq!(classify_client_error(None, true, None), ErrorClass::ConnectionLost);
        assert_eq!(classify_client_error(None, false, None), ErrorClass::Other);
        // An io::Error two levels down the source chain.
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] std::io::Error);
        let wrapped = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            classify_client_error(None, false, Some(&wrapped)),
            ErrorClass::ConnectionLost
        );
        let plain = std::fmt::Error;
        assert_eq!(classify_client_error(None, false, Some(&plain)), ErrorClass::Other);
    }

    #[derive(Debug)]
    struct FakeDbError(Option<&'static str>);

    impl std::fmt::Display for FakeDbError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fake database error")
        }
    }

    impl StdError for FakeDbError {}

    impl sqlx::error::DatabaseError for FakeDbError {
        fn message(&self) -> &str {
            "fake database error"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            self.0.map(std::borrow::Cow::Borrowed)
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn sqlx_classification() {
        let db = |code| sqlx::Error::Database(Box::new(FakeDbError(code)));
        assert_eq!(ErrorClass::from_sqlx(&db(Some("40P01"))), ErrorClass::DeadlockDetected);
        assert_eq!(
            ErrorClass::from_sqlx(&db(Some("53300"))),
            ErrorClass::TooManyConnections
        );
        assert_eq!(
            ErrorClass::from_sqlx(&db(Some("XX001"))),
            ErrorClass::OtherSqlState("XX001".into())
        );
        assert_eq!(ErrorClass::from_sqlx(&db(None)), ErrorClass::Other);
        assert_eq!(
            ErrorClass::from_sqlx(&sqlx::Error::PoolTimedOut),
            ErrorClass::PoolTimeout
        );
        assert_eq!(
            ErrorClass::from_sqlx(&sqlx::Error::PoolClosed),
            ErrorClass::ConnectionFailed
        );
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(ErrorClass::from_sqlx(&io), ErrorClass::ConnectionLost);
        assert_eq!(
            ErrorClass::from_sqlx(&sqlx::Error::Protocol("bad".into())),
            ErrorClass::ConnectionLost
        );
        assert_eq!(ErrorClass::from_sqlx(&sqlx::Error::RowNotFound), ErrorClass::Other);
    }
}
