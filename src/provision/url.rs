//! A server's URL with another database in it: the cell's copy, the
//! template, the admin database.

/// `url` with its database replaced by `database`.
pub fn database_url(url: &str, database: &str) -> String {
    match ::url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{database}"));
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_swaps_only_the_database() {
        assert_eq!(
            database_url("postgres://u:p@127.0.0.1:5432/postgres", "cell_1"),
            "postgres://u:p@127.0.0.1:5432/cell_1"
        );
        assert_eq!(
            database_url("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
