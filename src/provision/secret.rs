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

/// The URL with its password replaced by `***`; unparsable input is returned
/// with everything between `://` and `@` masked, so a typo never leaks a
/// password either.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => raw.to_string(),
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://***{}", &raw[..scheme_end], &raw[at..])
            }
            _ => raw.to_string(),
        },
    }
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
    fn passwords_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 24);
        assert_ne!(a, generate_password());
    }
}
