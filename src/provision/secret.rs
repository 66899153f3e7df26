//! Generated passwords and masking them out of anything contend prints or
//! writes.
//!
//! Every server contend starts gets a fresh random password; every URL that
//! reaches a log line, an error message or a results file goes through
//! [`mask_url`] first. Nothing here does I/O.

use rand::distr::{Alphanumeric, SampleString};

/// A random alphanumeric password, 24 characters (about 143 bits).
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// The URL or DSN with every password replaced by `***`, in each form
/// libpq and redis accept:
/// - URL userinfo, `postgres://user:secret@host/db`;
/// - a query parameter, `postgres://host/db?password=secret` (any case,
///   any position);
/// - a key=value connection string, `host=h password=secret dbname=d`,
///   with a bare or single-quoted value (`password='it''s \' here'`).
///
/// Unparsable URLs have everything between `://` and the last `@` masked,
/// so a typo never leaks a password either.
pub fn mask_url(raw: &str) -> String {
    if !raw.contains("://") {
        return mask_key_value(raw);
    }
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            let query_password = parsed.query_pairs().any(|(key, _)| is_password_key(&key));
            if parsed.password().is_none() && !query_password {
                return raw.to_string();
            }
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if query_password {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if is_password_key(&key) {
                            "***".into()
                        } else {
                            value.into_owned()
                        };
                        (key.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            // Url writes "***" percent-encoded in a query; show it plainly.
            parsed.to_string().replace("%2A%2A%2A", "***")
        }
        Err(_) => {
            let userinfo_masked = match (raw.find("://"), raw.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    format!("{}://***{}", &raw[..scheme_end], &raw[at..])
                }
                _ => raw.to_string(),
            };
            mask_query_passwords(&userinfo_masked)
        }
    }
}

/// Whether a query or DSN key names a password (`password`, `PassWord`,
/// and redis' `pass`).
fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("pass")
}

/// `password=…` values after `?` or `&` in text that is not a parsable URL.
fn mask_query_passwords(text: &str) -> String {
    let Some(query_start) = text.find('?') else {
        return text.to_string();
    };
    let (head, query) = text.split_at(query_start + 1);
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", masked.join("&"))
}

/// A libpq key=value string with its password values masked: keys may
/// have spaces around `=`, values are bare words or single-quoted with
/// `\'` or `''` inside.
fn mask_key_value(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        // A key: a run of word characters at the start or after whitespace.
        let at_word_start = i == 0 || chars[i - 1].is_whitespace();
        if at_word_start && (chars[i].is_alphanumeric() || chars[i] == '_') {
            let key_start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let key: String = chars[key_start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '=' {
                let mut k = j + 1;
                while k < chars.len() && chars[k].is_whitespace() {
                    k += 1;
                }
                let value_end = value_end(&chars, k);
                out.push_str(&key);
                out.extend(&chars[i..k]);
                if is_password_key(&key) {
                    out.push_str("***");
                } else {
                    out.extend(&chars[k..value_end]);
                }
                i = value_end;
                continue;
            }
            out.push_str(&key);
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Where a DSN value starting at `start` ends: after its closing quote, or
/// at the next whitespace.
fn value_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    if chars.get(i) == Some(&'\'') {
        i += 1;
        while i < chars.len() {
            match chars[i] {
                '\\' => i += 2,
                '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
                '\'' => return i + 1,
                _ => i += 1,
            }
        }
        return chars.len();
    }
    while i < chars.len() && !chars[i].is_whitespace() {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_keeps_rest() {
        assert_eq!(
            mask_url("postgres://contend:s3cret@127.0.0.1:5432/postgres"),
            "postgres://contend:***@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            mask_url("redis://default:pw@127.0.0.1:6379"),
            "redis://default:***@127.0.0.1:6379"
        );
    }

    #[test]
    fn leaves_passwordless_urls_alone() {
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn masks_unparsable_urls_too() {
        assert_eq!(mask_url("postgres://u:p w@h:bad/db"), "postgres://***@h:bad/db");
    }

    #[test]
    fn masks_query_parameter_passwords_in_any_case() {
        assert_eq!(
            mask_url("postgres://u@h:5432/db?sslmode=disable&password=s3cret"),
            "postgres://u@h:5432/db?sslmode=disable&password=***"
        );
        assert_eq!(
            mask_url("postgresql://h/db?PassWord=s3cret&application_name=x"),
            "postgresql://h/db?PassWord=***&application_name=x"
        );
        assert_eq!(
            mask_url("postgres://u:p@h/db?password=q"),
            "postgres://u:***@h/db?password=***"
        );
        assert_eq!(
            mask_url("postgres://h:bad/db?password=s3cret"),
            "postgres://h:bad/db?password=***"
        );
        assert!(!mask_url("postgres://h:bad/db?x=1&PASSWORD=s3cret").contains("s3cret"));
    }

    #[test]
    fn masks_key_value_dsns_bare_and_quoted() {
        assert_eq!(
            mask_url("host=127.0.0.1 port=5432 password=s3cret dbname=postgres"),
            "host=127.0.0.1 port=5432 password=*** dbname=postgres"
        );
        assert_eq!(
            mask_url("host=h password = 's3 cr\\'et' user=u"),
            "host=h password = *** user=u"
        );
        assert_eq!(mask_url("password='it''s' user=u"), "password=*** user=u");
        assert_eq!(mask_url("PASSWORD=x"), "PASSWORD=***");
        assert_eq!(mask_url("host=h dbname=d"), "host=h dbname=d");
    }

    #[test]
    fn passwords_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 24);
        assert_ne!(a, generate_password());
    }
}
