//! Names made safe for where a report puts them: HTML text and attribute
//! values ([`escape_html`]), and ids and file names ([`slug`]).
//!
//! Workload, operation, script and migration names reach a report from
//! records, which anyone can write: every name that goes into markup or a
//! path goes through one of these two functions, and nothing else builds
//! markup or paths from names.

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe as
/// HTML text and inside a quoted attribute value.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `name` as `[a-z0-9-]`, for an HTML id or a file name: letters and digits
/// lowercased, runs of anything else one `-`, none at either end. A name
/// that changes on the way (or slugs to nothing) gets a short hash of the
/// original appended, so two different names never share a slug and `/`
/// or `..` can never reach a path.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed == name && !name.is_empty() {
        return trimmed.to_string();
    }
    let hash = fnv1a(name.as_bytes());
    if trimmed.is_empty() {
        format!("x-{hash:08x}")
    } else {
        format!("{trimmed}-{hash:08x}")
    }
}

/// 32-bit FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_character_that_ends_text_or_an_attribute() {
        assert_eq!(
            escape_html(r#""><script>alert('x')</script>&"#),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }

    #[test]
    fn slugs_are_ids_and_file_names_that_cannot_escape() {
        assert_eq!(slug("goal-count"), "goal-count");
        for hostile in ["../../etc/passwd", "\"><script>", "a/b", "..", "", "Goal Count", "é"] {
            let s = slug(hostile);
            assert!(!s.is_empty());
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{s}"
            );
            assert!(!s.starts_with('-') && !s.ends_with('-'), "{s}");
        }
        assert_ne!(slug("a/b"), slug("a-b"));
        assert_ne!(slug("a/b"), slug("a.b"));
    }
}
