//! HTML as the model reads it: markdown (htmd, a maintained turndown-style converter) or
//! plain text, without scripts, styles and other markup that carries no content.

use std::rc::Rc;

use markup5ever_rcdom::{Node, NodeData};

/// Elements whose content is never shown.
const SKIP: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas",
];

/// Elements after which text starts a new line.
const BLOCK: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "pre",
    "blockquote",
    "hr",
    "dt",
    "dd",
    "nav",
    "main",
    "aside",
    "figure",
    "form",
];

fn converter() -> htmd::HtmlToMarkdown {
    htmd::HtmlToMarkdown::builder()
        .skip_tags(SKIP.to_vec())
        .build()
}

/// HTML → markdown.
pub fn to_markdown(html: &str) -> Result<String, String> {
    converter().convert(html).map_err(|e| e.to_string())
}

/// HTML → plain text, one line per block, blank runs folded.
pub fn to_text(html: &str) -> Result<String, String> {
    let tree = converter().html_to_tree(html).map_err(|e| e.to_string())?;
    let mut out = String::new();
    walk(&tree, &mut out);
    let mut text = String::new();
    let mut blank = 0;
    for line in out.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text.trim().to_string())
}

fn walk(node: &Rc<Node>, out: &mut String) {
    match &node.data {
        NodeData::Text { contents } => out.push_str(&contents.borrow()),
        NodeData::Element { name, .. } => {
            let tag = name.local.as_ref();
            if SKIP.contains(&tag) {
                return;
            }
            for child in node.children.borrow().iter() {
                walk(child, out);
            }
            if BLOCK.contains(&tag) {
                out.push('\n');
            }
        }
        NodeData::Document => {
            for child in node.children.borrow().iter() {
                walk(child, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<html><head><title>T</title><style>p{}</style></head><body><h1>Title</h1><p>Some <b>bold</b> and <a href=\"https://x.test/a\">a link</a>.</p><script>alert(1)</script><ul><li>one</li><li>two</li></ul></body></html>";

    #[test]
    fn markdown() {
        let md = to_markdown(PAGE).unwrap();
        assert!(md.contains("# Title"), "{md}");
        assert!(md.contains("**bold**"), "{md}");
        assert!(md.contains("[a link](https://x.test/a)"), "{md}");
        assert!(
            md.contains("one") && !md.contains("alert") && !md.contains("p{}"),
            "{md}"
        );
    }

    #[test]
    fn text() {
        let t = to_text(PAGE).unwrap();
        assert_eq!(t, "Title\nSome bold and a link.\none\ntwo");
    }
}
