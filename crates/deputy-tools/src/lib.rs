//! What an agent may do to a workspace: the workspace jail, the bash sandbox, the tools
//! (`bash`, `read`, `write`, `edit`, `glob`, `grep`, `list`) and permission rules.
//!
//! For: confining every effect of the model to the workspace. Not for: talking to models or
//! running the session loop.
