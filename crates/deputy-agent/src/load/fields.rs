//! The frontmatter as a whole: where a problem is (line and column in the file), the YAML
//! parse under a budget, and what each key means (`build`).

use super::*;

fn yaml_options() -> serde_saphyr::Options {
    // Agent frontmatter is a few dozen keys. These budgets stop alias bombs and pathological
    // nesting long before they cost memory or time, and are far above any real agent file.
    let budget = serde_saphyr::budget! {
        max_events: 200_000,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_recorded_anchor_events: 100_000,
        max_recorded_anchor_bytes: 1 << 20,
        flow_nesting_limit: 64,
    };
    serde_saphyr::options! {
        budget: budget,
    }
}

impl Ctx<'_> {
    pub(super) fn diag(
        &self,
        line: usize,
        column: usize,
        severity: Severity,
        msg: impl Into<String>,
    ) -> Diagnostic {
        let line = if line == 0 {
            0
        } else {
            line + self.line_offset
        };
        Diagnostic::new(self.path, line, column, severity, msg)
    }

    pub(super) fn error_at(&mut self, v: &Spanned<Value>, key: &str, msg: impl std::fmt::Display) {
        let (line, col) = loc(v);
        let d = self.diag(line, col, Severity::Error, format!("{key}: {msg}"));
        self.problems.push(d);
    }

    pub(super) fn note_at(
        &mut self,
        v: &Spanned<Value>,
        severity: Severity,
        msg: impl Into<String>,
    ) {
        let (line, col) = loc(v);
        let d = self.diag(line, col, severity, msg);
        self.notes.push(d);
    }

    pub(super) fn invalid(&self, problems: Vec<Diagnostic>) -> AgentError {
        AgentError::Invalid {
            path: self.path.to_path_buf(),
            problems,
        }
    }

    pub(super) fn yaml_error(&self, err: &serde_saphyr::Error) -> Diagnostic {
        let (line, col) = err
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        let plain = serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        };
        let mut msg = err.render_with_options(plain);
        // The plain rendering ends with " at line L, column C"; we print the position up front.
        if let Some(i) = msg.rfind(" at line ") {
            msg.truncate(i);
        }
        let msg = msg.trim().to_string();
        let hint = if msg.contains("tab") {
            " (YAML indentation must use spaces, not tabs)"
        } else if msg.contains("budget") || msg.contains("alias") {
            " (the frontmatter uses too many aliases or anchors; write the values out)"
        } else {
            ""
        };
        self.diag(
            line,
            col,
            Severity::Error,
            format!("invalid YAML frontmatter: {msg}{hint}"),
        )
    }

    /// Strict parse; on failure, one lenient re-reading for the well-known unquoted `: ` case.
    pub(super) fn parse_yaml(&mut self, yaml: &str) -> Result<RawMap, AgentError> {
        if yaml.trim().is_empty() {
            return Ok(RawMap::new());
        }
        let strict = serde_saphyr::from_str_with_options::<Option<RawMap>>(yaml, yaml_options());
        let err = match strict {
            Ok(map) => return Ok(map.unwrap_or_default()),
            Err(err) => err,
        };
        let mut first = self.yaml_error(&err);
        if first.message.contains("tab") {
            // The parser reports where the scalar began; point at the tab itself.
            if let Some(i) = yaml.lines().position(|l| {
                l.chars()
                    .take_while(|c| c.is_whitespace())
                    .any(|c| c == '\t')
            }) {
                first.line = i + 1 + self.line_offset;
                first.column = 1;
            }
        }
        let first = if first.message.contains("invalid type") && first.message.contains("map") {
            Diagnostic {
                message: "the frontmatter must be a mapping of `key: value` lines".into(),
                ..first
            }
        } else {
            first
        };
        if let Some(repair) = lenient::repair(yaml)
            && let Ok(map) =
                serde_saphyr::from_str_with_options::<Option<RawMap>>(&repair.yaml, yaml_options())
        {
            for (line, key) in &repair.fixed {
                let d = self.diag(
                    line + 1,
                    1,
                    Severity::Warning,
                    format!(
                        "`{key}` contains an unquoted `: `, which strict YAML rejects; read it as \
                         plain text (quote the value to silence this warning)"
                    ),
                );
                self.notes.push(d);
            }
            return Ok(map.unwrap_or_default());
        }
        Err(self.invalid(vec![first]))
    }

    pub(super) fn build(
        &mut self,
        map: RawMap,
        body: String,
        fallback_name: String,
        opts: &LoadOptions,
    ) -> Result<AgentSpec, AgentError> {
        let mut spec = AgentSpec::new(fallback_name, body);
        spec.source = Some(self.path.to_path_buf());
        let mut disallowed: Vec<String> = Vec::new();
        let mut prompt_key: Option<Spanned<Value>> = None;
        for (key, v) in map {
            match key.as_str() {
                "name" => {
                    if let Some(s) = self.string(&v, &key) {
                        let s = s.trim().to_string();
                        if s.is_empty() || s.contains('\n') {
                            self.error_at(&v, &key, "must be a non-empty single line");
                        } else {
                            spec.name = s;
                        }
                    }
                }
                "description" => {
                    spec.description = self.string(&v, &key).map(|s| s.trim().to_string())
                }
                "mode" => {
                    if let Some(s) = self.string(&v, &key) {
                        match Mode::parse(&s) {
                            Some(m) => spec.mode = m,
                            None => self.error_at(
                                &v,
                                &key,
                                format!("must be one of primary, subagent, all; found `{s}`"),
                            ),
                        }
                    }
                }
                "model" => spec.model = self.string(&v, &key).map(|s| ModelRef::parse(&s)),
                "temperature" => spec.temperature = self.number_in(&v, &key, 0.0, 2.0),
                "top_p" | "topP" | "top-p" => spec.top_p = self.number_in(&v, &key, 0.0, 1.0),
                "reasoningEffort" | "reasoning_effort" | "effort" => {
                    if let Some(s) = self.string(&v, &key) {
                        match s.as_str() {
                            "minimal" | "low" | "medium" | "high" => {
                                spec.reasoning_effort = Some(s)
                            }
                            _ => self.error_at(
                                &v,
                                &key,
                                format!("must be one of minimal, low, medium, high; found `{s}`"),
                            ),
                        }
                    }
                }
                "thinking" | "thinkingBudget" | "thinking_budget" => match &v.value {
                    Value::Bool(false) => spec.thinking_budget = Some(0),
                    _ => {
                        if let Some(n) = self.positive_int(&v, &key) {
                            spec.thinking_budget = Some(n);
                        }
                    }
                },
                "steps" | "maxSteps" | "max_steps" | "maxTurns" | "max_turns" => {
                    if let Some(n) = self.positive_int(&v, &key) {
                        spec.max_steps = Some(n);
                    }
                }
                "timeout_mins" | "timeout_minutes" | "timeoutMins" => {
                    if let Some(m) = self.number_in(&v, &key, f64::MIN_POSITIVE, 10_000.0) {
                        spec.timeout = Some(Duration::from_secs_f64(m * 60.0));
                    }
                }
                "timeout" => spec.timeout = self.duration(&v, &key).or(spec.timeout),
                "runConfig" | "run_config" => self.run_config(&v, &mut spec),
                "tools" => {
                    if let Some(tools) = self.tools(&v, &key) {
                        spec.tools = tools;
                    }
                }
                "disallowedTools" | "disallowed_tools" | "disallowed-tools" | "excludeTools"
                | "exclude_tools" => {
                    if let Some(names) = self.name_list(&v, &key) {
                        disallowed.extend(names);
                    }
                }
                "permission" | "permissions" => {
                    if key == "permissions" {
                        self.note_at(
                            &v,
                            Severity::Note,
                            "`permissions` read as `permission` (opencode ignores the plural; deputy applies it)",
                        );
                    }
                    if let Some(rules) = self.permission(&v, &key) {
                        spec.permission.extend(rules);
                    }
                }
                "network" => spec.network = self.boolean(&v, &key),
                "isolation" => {
                    if let Some(s) = self.string(&v, &key) {
                        match crate::spec::Isolation::parse(&s) {
                            Some(i) => spec.isolation = i,
                            None => self.error_at(
                                &v,
                                &key,
                                format!("must be `worktree` (or `none`); found `{s}`"),
                            ),
                        }
                    }
                }
                "instructions" => spec.instructions = self.boolean(&v, &key),
                "skills" => {
                    if let Some(names) = self.name_list(&v, &key) {
                        spec.skills = names;
                    }
                }
                "hidden" => spec.hidden = self.boolean(&v, &key).unwrap_or(false),
                "disable" | "disabled" => spec.disable = self.boolean(&v, &key).unwrap_or(false),
                "color" | "colour" => spec.color = self.string(&v, &key),
                "prompt" | "system_prompt" | "systemPrompt" => prompt_key = Some(v),
                "mcpServers" | "mcp_servers" | "mcp" => {
                    let unit = if key == "mcp" {
                        crate::mcp::NumberUnit::Millis
                    } else {
                        crate::mcp::NumberUnit::Seconds
                    };
                    self.mcp_servers(&v, &key, unit, &mut spec);
                }
                _ => {
                    self.note_at(
                        &v,
                        Severity::Note,
                        format!("unknown key `{key}` (kept in options, not used by deputy)"),
                    );
                    spec.options.insert(key, v.value);
                }
            }
        }
        // A server the file declares is there to be used: its tools are enabled unless the
        // file says otherwise about that server.
        for name in spec.mcp_servers.keys() {
            let entry = format!("mcp__{name}");
            if !spec
                .tools
                .overrides
                .keys()
                .any(|k| crate::mcp::mcp_server_of(k) == Some(name.as_str()))
            {
                spec.tools.overrides.insert(entry, true);
            }
        }
        if !disallowed.is_empty() {
            spec.tools.disable(&disallowed);
        }
        for unknown in spec.tools.unknown() {
            let message = match crate::mcp::mcp_server_of(unknown) {
                Some(server) if spec.mcp_servers.contains_key(server) => continue,
                Some(server) => format!(
                    "tool `{unknown}` comes from MCP server `{server}`, which this file does not \
                     declare; it is offered only if config declares it ([mcp.servers.{server}])"
                ),
                None => format!("tool `{unknown}` is not provided by deputy; it is ignored"),
            };
            let d = self.diag(0, 0, Severity::Note, message);
            self.notes.push(d);
        }
        if let Some(v) = prompt_key {
            self.prompt(&v, &mut spec, opts);
        }
        if !self.problems.is_empty() {
            let problems = std::mem::take(&mut self.problems);
            return Err(self.invalid(problems));
        }
        spec.diagnostics = std::mem::take(&mut self.notes);
        // Stable order: by line.
        spec.diagnostics.sort_by_key(|d| (d.line, d.column));
        Ok(spec)
    }
}
