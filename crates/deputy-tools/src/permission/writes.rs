//! What a command line writes to files, besides what its programs are: output redirections and
//! the flags by which a program writes a file. A rule that allows a command (`git log*`) allows
//! running it, not writing files with it: `git log -1 > F` and `git log --output=F` need what
//! writing needs (see `decide_in`).

use tree_sitter::Node;

/// Where a redirection writes, when it writes to a file: `> F`, `>> F`, `&> F`, `>| F`, `<> F`
/// (not `/dev/null`, the standard streams, or a descriptor duplication like `2>&1`). `None`
/// for reading redirections and for destinations that are not literal (the line is opaque
/// then anyway).
pub(super) fn redirect_target(node: Node, src: &[u8]) -> Option<String> {
    let mut op = None;
    let mut dest = None;
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        match child.kind() {
            ">" | ">>" | "&>" | "&>>" | ">|" | "<>" | ">&" | "&>|" => op = Some(child.kind()),
            "<" | "<&" | "<<" | "<<<" | "<<-" => return None,
            "file_descriptor" => {}
            _ if child.is_named() => dest = child.utf8_text(src).ok(),
            _ => {}
        }
    }
    op?;
    let dest = dest?.trim_matches(['"', '\'']);
    let harmless = dest.is_empty()
        || dest == "-"
        || dest.chars().all(|c| c.is_ascii_digit())
        || matches!(
            dest,
            "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty"
        )
        || dest.starts_with("/dev/fd/");
    (!harmless).then(|| dest.to_string())
}

/// Long flags that name a file a program writes, whatever the program.
const LONG: &[&str] = &[
    "--output",
    "--output-file",
    "--output-document",
    "--out-file",
    "--outfile",
    "--log-file",
    "--dump-header",
    "--cookie-jar",
    "--trace",
    "--trace-ascii",
    "--remote-name",
    "--remote-name-all",
    "--append-output",
    "--directory-prefix",
];

/// Short flags by which these programs write a file (the flag's value, or a file they name).
fn short_writers(program: &str, sub: Option<&str>) -> &'static [char] {
    match (program, sub) {
        ("curl", _) => &['o', 'O', 'D', 'c'],
        ("wget", _) => &['O', 'o', 'a', 'P'],
        ("sort", _) => &['o'],
        ("git", Some("format-patch" | "archive")) => &['o'],
        ("gcc" | "g++" | "cc" | "c++" | "clang" | "clang++" | "ld" | "as" | "rustc", _) => &['o'],
        _ => &[],
    }
}

/// The writing flags of one simple command (`words` as parsed, the program first, wrappers
/// included: `sudo curl -o F` is curl writing), as they were written.
pub(super) fn writing_flags(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    // The program: the first word whose name has short writing flags (past any wrapper).
    let mut program: Option<(usize, &str)> = None;
    for (i, w) in words.iter().enumerate() {
        let base = w.rsplit('/').next().unwrap_or(w);
        if !short_writers(base, Some("format-patch")).is_empty() {
            program = Some((i, base));
            break;
        }
    }
    let sub = program.and_then(|(i, _)| {
        words[i + 1..]
            .iter()
            .find(|w| !w.starts_with('-'))
            .map(String::as_str)
    });
    let letters = program.map_or(&[][..], |(_, p)| short_writers(p, sub));
    let start = program.map_or(0, |(i, _)| i + 1);
    for (i, w) in words.iter().enumerate() {
        if w == "--" && i >= start {
            break;
        }
        let long = w.split('=').next().unwrap_or(w);
        if LONG.contains(&long) {
            out.push(w.clone());
            continue;
        }
        // A cluster of short flags (`-fsSLo`), after the program.
        if i >= start
            && program.is_some()
            && w.len() > 1
            && w.starts_with('-')
            && !w.starts_with("--")
            && w[1..].chars().any(|c| letters.contains(&c))
        {
            out.push(w.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(line: &str) -> Vec<String> {
        writing_flags(
            &line
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn writing_flags_are_found_and_look_alikes_are_not() {
        for line in [
            "git log --output=x",
            "git diff --output x",
            "curl -fsSLo x https://e",
            "sudo curl -O https://e/x",
            "wget -O x https://e",
            "sort -o x y",
            "git format-patch -o out HEAD~1",
            "cc -o a.out main.c",
        ] {
            assert!(!flags(line).is_empty(), "{line}");
        }
        for line in [
            "grep -o foo x",
            "ls -o",
            "git grep -o foo",
            "git log --oneline",
            "sort -r x",
            "curl -s https://e",
            "echo -o",
        ] {
            assert!(flags(line).is_empty(), "{line}: {:?}", flags(line));
        }
    }
}
