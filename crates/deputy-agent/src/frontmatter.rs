//! Splitting an agent file into its YAML frontmatter and its markdown body.
//!
//! Real agent collections are not tidy: files are saved with a UTF-8 byte-order mark, with CRLF
//! line endings, with blank lines before the opening fence or right after it. [`normalize`] and
//! [`split`] accept all of that, so the same agent gives the same spec however it was saved.

/// The text with a leading BOM removed and CRLF (and lone CR) line endings turned into LF.
pub fn normalize(text: &str) -> std::borrow::Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The YAML between the fences, and the 1-based line of the file its first line sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontmatter<'a> {
    pub yaml: &'a str,
    pub first_line: usize,
}

/// A normalized agent file cut in two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split<'a> {
    pub frontmatter: Option<Frontmatter<'a>>,
    /// The markdown after the closing fence (or the whole text when there is no frontmatter).
    pub body: &'a str,
}

/// The opening fence was found but no closing one; carries the opening fence's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unterminated {
    pub line: usize,
}

fn is_fence(line: &str) -> bool {
    line.trim_end() == "---"
}

/// Cut normalized text (see [`normalize`]) into frontmatter and body.
///
/// Leading blank lines are skipped. A file whose first non-blank line is not `---` has no
/// frontmatter. The closing fence is the next line that is exactly `---` (trailing blanks
/// allowed); `...` is also accepted, as YAML allows it to end a document.
pub fn split(text: &str) -> Result<Split<'_>, Unterminated> {
    let mut offset = 0;
    let mut line_no = 0;
    // Skip leading blank lines.
    let mut fence_line = None;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        let content = line.strip_suffix('\n').unwrap_or(line);
        if content.trim().is_empty() {
            offset += line.len();
            continue;
        }
        if is_fence(content) {
            fence_line = Some(line_no);
            offset += line.len();
        }
        break;
    }
    let Some(open_line) = fence_line else {
        return Ok(Split {
            frontmatter: None,
            body: text,
        });
    };
    let yaml_start = offset;
    let mut cursor = yaml_start;
    for line in text[yaml_start..].split_inclusive('\n') {
        let content = line.strip_suffix('\n').unwrap_or(line);
        if is_fence(content) || content.trim_end() == "..." {
            let yaml = &text[yaml_start..cursor];
            let body = &text[cursor + line.len()..];
            return Ok(Split {
                frontmatter: Some(Frontmatter {
                    yaml,
                    first_line: open_line + 1,
                }),
                body,
            });
        }
        cursor += line.len();
    }
    Err(Unterminated { line: open_line })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_frontmatter() {
        let s = split("---\nname: a\n---\nbody\n").unwrap();
        let fm = s.frontmatter.unwrap();
        assert_eq!(fm.yaml, "name: a\n");
        assert_eq!(fm.first_line, 2);
        assert_eq!(s.body, "body\n");
    }

    #[test]
    fn leading_blank_lines_and_blank_after_fence() {
        let s = split("\n\n---\n\nname: a\n---\n\nbody").unwrap();
        let fm = s.frontmatter.unwrap();
        assert_eq!(fm.yaml, "\nname: a\n");
        assert_eq!(fm.first_line, 4);
        assert_eq!(s.body, "\nbody");
    }

    #[test]
    fn no_frontmatter() {
        let s = split("# Title\n---\n").unwrap();
        assert!(s.frontmatter.is_none());
        assert_eq!(s.body, "# Title\n---\n");
    }

    #[test]
    fn unterminated() {
        assert_eq!(
            split("---\nname: a\n").unwrap_err(),
            Unterminated { line: 1 }
        );
        assert_eq!(split("\n---").unwrap_err(), Unterminated { line: 2 });
    }

    #[test]
    fn empty_frontmatter_and_no_trailing_newline() {
        let s = split("---\n---").unwrap();
        assert_eq!(s.frontmatter.unwrap().yaml, "");
        assert_eq!(s.body, "");
    }

    #[test]
    fn normalize_bom_and_crlf() {
        assert_eq!(normalize("\u{feff}a\r\nb\rc"), "a\nb\nc");
        assert!(matches!(normalize("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
