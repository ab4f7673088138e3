//! One module per subcommand. Each turns parsed arguments into calls on the library crates and
//! renders the result; none holds business logic.

pub mod agents;
pub mod chat;
pub mod mcp;
#[cfg(feature = "mock-server")]
pub mod mock;
pub mod review;
pub mod run;
pub mod sandbox;
pub mod serve;
pub mod sessions;
pub mod skills;
pub mod trust;
