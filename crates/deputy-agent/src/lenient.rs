//! The tolerant second reading of frontmatter that strict YAML rejects.
//!
//! Claude Code reads `description: Use when… Triggers on: 'x', 'y'` as one string, although YAML
//! forbids an unquoted `: ` inside a plain scalar. Many published agents rely on that. When the
//! strict parse fails, [`repair`] re-reads every top-level `key: rest-of-line` whose plain value
//! contains `: ` as a quoted string (folding indented continuation lines into it, as YAML would),
//! and the caller parses the result strictly again. Anything else stays an error.

/// What [`repair`] changed: the repaired YAML and the (0-based line, key) of each quoted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub yaml: String,
    pub fixed: Vec<(usize, String)>,
}

fn split_key(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    let key = &line[..colon];
    let valid_key = !key.is_empty()
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_key {
        return None;
    }
    let rest = &line[colon + 1..];
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some((key, rest.trim()))
}

fn needs_quoting(value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    // Values that start a quoted scalar, a flow collection, a block scalar, an anchor, an alias,
    // a tag or a comment are YAML syntax, not text to guess at.
    let first = value.chars().next().unwrap_or(' ');
    if matches!(
        first,
        '"' | '\'' | '[' | '{' | '|' | '>' | '&' | '*' | '!' | '#' | '%' | '@' | '`'
    ) {
        return false;
    }
    value.contains(": ") || value.ends_with(':')
}

fn is_continuation(line: &str) -> bool {
    line.starts_with([' ', '\t']) && !line.trim().is_empty() && !line.trim_start().starts_with('#')
}

/// Re-read top-level plain values containing `: ` as quoted strings. `None` when there is nothing
/// of that kind to repair (the YAML error is something else).
pub fn repair(yaml: &str) -> Option<Repair> {
    let lines: Vec<&str> = yaml.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut fixed = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some((key, value)) = split_key(line)
            && needs_quoting(value)
        {
            let mut text = value.to_string();
            let start = i;
            // Fold indented continuation lines into the value, as YAML folds a plain scalar.
            while i + 1 < lines.len() && is_continuation(lines[i + 1]) {
                i += 1;
                text.push(' ');
                text.push_str(lines[i].trim());
            }
            out.push(format!("{key}: '{}'", text.replace('\'', "''")));
            // Keep line numbers stable for later error messages.
            for _ in start..i {
                out.push(String::new());
            }
            fixed.push((start, key.to_string()));
        } else {
            out.push(line.to_string());
        }
        i += 1;
    }
    if fixed.is_empty() {
        None
    } else {
        Some(Repair {
            yaml: out.join("\n"),
            fixed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_unquoted_colon_values() {
        let yaml = "name: x\ndescription: Use it. Triggers on: 'a', 'b'\ntools: Read, Grep\n";
        let r = repair(yaml).unwrap();
        assert_eq!(
            r.yaml,
            "name: x\ndescription: 'Use it. Triggers on: ''a'', ''b'''\ntools: Read, Grep\n"
        );
        assert_eq!(r.fixed, vec![(1, "description".to_string())]);
    }

    #[test]
    fn folds_continuations() {
        let yaml = "description: a: b\n  more text\nname: x";
        let r = repair(yaml).unwrap();
        assert_eq!(r.yaml, "description: 'a: b more text'\n\nname: x");
    }

    #[test]
    fn leaves_other_errors_alone() {
        assert!(repair("name: [unclosed\n").is_none());
        assert!(repair("\tname: x\n").is_none());
        assert!(repair("description: \"quoted: fine\"\n").is_none());
    }
}
