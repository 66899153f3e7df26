//! What a PostgreSQL error of contend's own connections says: whether the
//! server is gone, and one line of its words. Shared by the run's errors
//! and the template's, so neither imports the other.

use crate::provision::tls::TlsRefusal;

/// Whether `error` says the connection to the server is gone: closed, a
/// socket error (a refused reconnect included: the server answered when the
/// run started), a connection exception (SQLSTATE class 08), or the server
/// ending sessions because it shuts down, crashed or is recovering
/// (57P01, 57P02, 57P03).
pub(super) fn connection_lost(error: &tokio_postgres::Error) -> bool {
    // A refused handshake is a setting to change, not a server gone.
    if TlsRefusal::of(error).is_some() {
        return false;
    }
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
}

/// One line of what `error` says: the server's message and SQLSTATE, or the
/// client's error with its cause (tokio_postgres' own text omits it).
pub(super) fn pg_reason(error: &tokio_postgres::Error) -> String {
    if let Some(refusal) = TlsRefusal::of(error) {
        return refusal.to_string();
    }
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    }
}
