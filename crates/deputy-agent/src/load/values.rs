//! One key's value, read as the type the key takes (a string, a bounded number, a duration,
//! a list of names, tools, permission rules, the prompt), with a diagnostic at its place when
//! it is not one.

use super::*;

impl Ctx<'_> {
    pub(super) fn string(&mut self, v: &Spanned<Value>, key: &str) -> Option<String> {
        match &v.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
            other => {
                self.error_at(v, key, format!("must be text, found {}", kind(other)));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, v: &Spanned<Value>, key: &str) -> Option<bool> {
        match &v.value {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.error_at(
                    v,
                    key,
                    format!("must be true or false, found {}", show(other)),
                );
                None
            }
        }
    }

    pub(super) fn number_in(
        &mut self,
        v: &Spanned<Value>,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let n = match &v.value {
            Value::Number(n) => n.as_f64(),
            Value::Null => return None,
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
            _ => {
                let range = if min <= 0.0 {
                    format!("a number from {min} to {max}")
                } else {
                    "a positive number".to_string()
                };
                self.error_at(v, key, format!("must be {range}, found {}", show(&v.value)));
                None
            }
        }
    }

    pub(super) fn positive_int(&mut self, v: &Spanned<Value>, key: &str) -> Option<u32> {
        match &v.value {
            Value::Number(n)
                if n.as_u64()
                    .is_some_and(|n| n >= 1 && n <= u64::from(u32::MAX)) =>
            {
                n.as_u64().map(|n| n as u32)
            }
            Value::Null => None,
            other => {
                self.error_at(
                    v,
                    key,
                    format!(
                        "must be a whole number of at least 1, found {}",
                        show(other)
                    ),
                );
                None
            }
        }
    }

    /// `timeout: 90` (seconds), `timeout: 90s`, `10m`, `1h`.
    pub(super) fn duration(&mut self, v: &Spanned<Value>, key: &str) -> Option<Duration> {
        let parsed = match &v.value {
            Value::Number(n) => n
                .as_f64()
                .filter(|s| *s > 0.0 && s.is_finite() && *s <= MAX_DURATION_SECS),
            Value::String(s) => parse_duration_secs(s),
            Value::Null => return None,
            _ => None,
        };
        match parsed {
            Some(secs) => duration_from_secs(secs),
            None => {
                self.error_at(
                    v,
                    key,
                    format!(
                        "must be a duration such as 90 (seconds), 90s, 10m or 1h, at most 30 days, found {}",
                        show(&v.value)
                    ),
                );
                None
            }
        }
    }

    pub(super) fn run_config(&mut self, v: &Spanned<Value>, spec: &mut AgentSpec) {
        let Value::Object(map) = &v.value else {
            self.error_at(
                v,
                "runConfig",
                "must be a mapping (max_turns, max_time_minutes)",
            );
            return;
        };
        for (k, val) in map {
            let sub = Spanned {
                value: val.clone(),
                referenced: v.referenced,
                defined: v.defined,
            };
            let key = format!("runConfig.{k}");
            match k.as_str() {
                "max_turns" | "maxTurns" => spec.max_steps = self.positive_int(&sub, &key),
                "max_time_minutes" | "maxTimeMinutes" => {
                    if let Some(m) = self.number_in(&sub, &key, f64::MIN_POSITIVE, 10_000.0) {
                        spec.timeout = Some(Duration::from_secs_f64(m * 60.0));
                    }
                }
                _ => {
                    self.note_at(
                        v,
                        Severity::Note,
                        format!("unknown key `{key}` (not used by deputy)"),
                    );
                    spec.options.insert(key, val.clone());
                }
            }
        }
    }

    pub(super) fn name_list(&mut self, v: &Spanned<Value>, key: &str) -> Option<Vec<String>> {
        match &v.value {
            Value::Null => Some(Vec::new()),
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.trim().to_string()),
                        other => {
                            self.error_at(
                                v,
                                key,
                                format!("list items must be tool names, found {}", show(other)),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.error_at(
                    v,
                    key,
                    format!(
                        "must be a list of tool names or a comma-separated string, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// `mcpServers` (a map, or Claude Code's list of names and one-entry maps) or `mcp`.
    pub(super) fn mcp_servers(
        &mut self,
        v: &Spanned<Value>,
        key: &str,
        unit: crate::mcp::NumberUnit,
        spec: &mut AgentSpec,
    ) {
        let mut inline = serde_json::Map::new();
        match &v.value {
            Value::Null => return,
            Value::Object(m) => inline = m.clone(),
            Value::Array(items) => {
                for item in items {
                    match item {
                        // A server configured elsewhere, by name: enable its tools.
                        Value::String(name) => {
                            spec.tools
                                .overrides
                                .insert(format!("mcp__{}", name.trim()), true);
                        }
                        Value::Object(m) => inline.extend(m.clone()),
                        _ => self.error_at(v, key, "items must be server names or maps"),
                    }
                }
            }
            _ => {
                self.error_at(v, key, "must be a map of server name → declaration");
                return;
            }
        }
        let (servers, errors) = crate::mcp::parse_servers(&Value::Object(inline), unit);
        for e in errors {
            self.error_at(v, key, e);
        }
        spec.mcp_servers.extend(servers);
    }

    pub(super) fn tools(&mut self, v: &Spanned<Value>, key: &str) -> Option<ToolSet> {
        match &v.value {
            // `tools:` with nothing after it: as if absent.
            Value::Null => None,
            Value::Object(map) => {
                let mut set = ToolSet::all();
                for (name, enabled) in map {
                    let on = match enabled {
                        Value::Bool(b) => *b,
                        Value::String(s) => match Action::parse(s) {
                            Some(a) => a != Action::Deny,
                            None => {
                                self.error_at(
                                    v,
                                    key,
                                    format!("`{name}` must be true or false, found \"{s}\""),
                                );
                                continue;
                            }
                        },
                        other => {
                            self.error_at(
                                v,
                                key,
                                format!("`{name}` must be true or false, found {}", show(other)),
                            );
                            continue;
                        }
                    };
                    if name.trim() == "*" {
                        set.default = on;
                    } else {
                        set.overrides.insert(canonical_tool_name(name), on);
                    }
                }
                Some(set)
            }
            _ => self.name_list(v, key).map(ToolSet::only),
        }
    }

    pub(super) fn permission(
        &mut self,
        v: &Spanned<Value>,
        key: &str,
    ) -> Option<Vec<PermissionRule>> {
        if v.value.is_null() {
            return None;
        }
        let (rules, errors) = crate::permission::parse_permission(&v.value);
        for e in errors {
            self.error_at(v, key, e);
        }
        if let Value::Object(map) = &v.value {
            for tool in map.keys() {
                let name = canonical_tool_name(tool);
                if tool.trim() != "*" && !is_builtin_tool(&name) {
                    self.note_at(
                        v,
                        Severity::Note,
                        format!("permission for `{tool}`: deputy has no such tool; the rule is kept but never matches"),
                    );
                }
            }
        }
        (!v.value.is_array() && !v.value.is_number()).then_some(rules)
    }

    pub(super) fn prompt(&mut self, v: &Spanned<Value>, spec: &mut AgentSpec, opts: &LoadOptions) {
        let Some(text) = self.string(v, "prompt") else {
            return;
        };
        let trimmed = text.trim();
        let resolved = match trimmed
            .strip_prefix("{file:")
            .and_then(|r| r.strip_suffix('}'))
        {
            Some(reference) => match self.prompt_file(reference.trim(), opts) {
                Ok(t) => t,
                Err(msg) => {
                    self.error_at(v, "prompt", msg);
                    return;
                }
            },
            None => text,
        };
        if !spec.prompt.is_empty() {
            self.note_at(
                v,
                Severity::Warning,
                "both a `prompt` key and a body are present; the `prompt` key is used",
            );
        }
        spec.prompt = clean_body(&frontmatter::normalize(&resolved));
    }

    pub(super) fn prompt_file(
        &self,
        reference: &str,
        opts: &LoadOptions,
    ) -> Result<String, String> {
        let base = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let root = opts.root.clone().unwrap_or_else(|| base.to_path_buf());
        let target = base.join(reference);
        let outside = || {
            format!(
                "prompt file `{reference}` is outside the agent's directory {}; refused",
                root.display()
            )
        };
        // Refuse lexical escapes before touching the file system, then symlink escapes below.
        if !lexically_normal(&target).starts_with(lexically_normal(&root)) {
            return Err(outside());
        }
        let root_real = root
            .canonicalize()
            .map_err(|e| format!("cannot resolve the agent directory {}: {e}", root.display()))?;
        let real = target.canonicalize().map_err(|e| {
            format!(
                "cannot open prompt file `{reference}` ({}): {e}",
                target.display()
            )
        })?;
        if !real.starts_with(&root_real) {
            return Err(outside());
        }
        read_capped(&real).map_err(|e| match e {
            AgentError::TooLarge { size, limit, .. } => {
                format!("prompt file `{reference}` is {size} bytes, over the {limit}-byte limit")
            }
            AgentError::NotUtf8 { .. } => format!("prompt file `{reference}` is not UTF-8 text"),
            other => format!("prompt file `{reference}`: {other}"),
        })
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system. A leading `..` is kept.
pub(super) fn lexically_normal(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

pub(super) fn loc(v: &Spanned<Value>) -> (usize, usize) {
    (v.referenced.line() as usize, v.referenced.column() as usize)
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}
