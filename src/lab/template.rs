//! My client's argument template: words split on white space (no shell, so no quoting
//! surprises), each `{name}` replaced by its value.

use std::collections::BTreeMap;

/// The placeholders, which are also exported as `TESTBED_<NAME>` environment variables.
pub const NAMES: &[&str] = &[
    "torrent",
    "saveas",
    "tracker",
    "vod_url",
    "rate",
    "delay",
    "prefetch",
    "max_upload_rate",
    "report",
];

/// Check that every `{...}` names a known placeholder.
pub fn check(template: &str) -> Result<(), String> {
    for_each_placeholder(template, |name| {
        if NAMES.contains(&name) {
            Ok(())
        } else {
            Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                NAMES.join(", ")
            ))
        }
    })
}

fn for_each_placeholder(
    s: &str,
    mut f: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {s:?}"))?;
        f(&after[..close])?;
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Replace placeholders in one word.
pub fn fill(word: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = word.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Split a template into words and fill each.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Vec<String> {
    template
        .split_whitespace()
        .map(|w| fill(w, values))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_words_without_a_shell() {
        let mut v = BTreeMap::new();
        v.insert("saveas", "/tmp/a b".to_string());
        v.insert("rate", "60".to_string());
        let words = render("--saveas {saveas} --rate={rate}  x", &v);
        assert_eq!(words, vec!["--saveas", "/tmp/a b", "--rate=60", "x"]);
        assert!(check(crate::lab::config::DEFAULT_ARGS).is_ok());
        assert!(check("{bogus}").unwrap_err().contains("bogus"));
        assert!(check("{rate").is_err());
    }
}
