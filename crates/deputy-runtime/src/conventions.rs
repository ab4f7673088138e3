//! What a session takes from the conventions of the repository and of the user: project
//! instructions, hooks and skills (see `instructions`, `hooks`, `skills`), as config and trust
//! allow.

use std::path::PathBuf;
use std::sync::Arc;

use crate::factory::{Factory, RunSettings, SetupError};
use crate::options::SessionOptions;

impl Factory {
    /// Set `opts`' instructions, hooks and skills for a run with `settings`.
    pub(crate) fn conventions(
        &self,
        settings: &RunSettings,
        opts: &mut SessionOptions,
    ) -> Result<(), SetupError> {
        let home = deputy_tools::sandbox::view::home_dir();
        let config_dir = crate::config::config_dir(home.as_deref());
        opts.instructions = self.instructions(settings, config_dir.as_deref())?;
        opts.hooks = self.hooks(home.as_deref())?;
        opts.skills.user_dirs =
            crate::skills::user_skill_dirs(home.as_deref(), config_dir.as_deref());
        Ok(())
    }

    /// The user's hooks: `[hooks]` in config (a project's only when trusted: `trust::tighten`
    /// drops it otherwise), the `hooks` block of `~/.claude/settings.json`, and a trusted
    /// project's `.claude/settings.json` and `.claude/settings.local.json`.
    fn hooks(
        &self,
        home: Option<&std::path::Path>,
    ) -> Result<Arc<crate::hooks::Hooks>, SetupError> {
        let mut hooks = crate::hooks::Hooks::default();
        if let Some(block) = self.config.sections.get("hooks") {
            let v = serde_json::to_value(block)
                .map_err(|e| SetupError::Config(format!("[hooks]: {e}")))?;
            let files: Vec<String> = self
                .config
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            let origin = PathBuf::from(files.join(" + "));
            hooks.add_block(&v, &origin).map_err(SetupError::Config)?;
        }
        if let Some(home) = home {
            hooks
                .add_settings_file(&home.join(".claude/settings.json"))
                .map_err(SetupError::Config)?;
        }
        if self.project_trusted {
            let root = self.project.as_ref().unwrap_or(&self.workspace);
            for f in [".claude/settings.json", ".claude/settings.local.json"] {
                hooks
                    .add_settings_file(&root.join(f))
                    .map_err(SetupError::Config)?;
            }
        }
        Ok(Arc::new(hooks))
    }

    /// `[instructions]`, the user's own file in their config directory, `--no-instructions`.
    fn instructions(
        &self,
        settings: &RunSettings,
        config_dir: Option<&std::path::Path>,
    ) -> Result<crate::instructions::InstructionSettings, SetupError> {
        let cfg: crate::instructions::InstructionsConfig = self
            .config
            .section("instructions")
            .map_err(SetupError::Config)?;
        let user_file = config_dir.map(|d| d.join("AGENTS.md"));
        let mut s = cfg.settings(user_file).map_err(SetupError::Config)?;
        s.enabled &= !settings.no_instructions;
        Ok(s)
    }
}
