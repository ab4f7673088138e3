//! The model side of deputy: the [`ModelClient`] trait and [`OpenAiClient`], its
//! OpenAI-compatible streaming implementation.
//!
//! It is for: talking to any Chat Completions endpoint (OpenAI, Azure, OpenRouter, Groq,
//! Mistral, DeepSeek, xAI, Ollama, llama.cpp, vLLM, LM Studio, …) and smoothing over how each
//! bends the protocol; retries with backoff and `Retry-After`; timeouts; a circuit breaker per
//! provider with fallback models; usage and cost.
//!
//! It is not for: tools, agents or the session loop. It knows nothing of them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), deputy_llm::LlmError> {
//! use deputy_llm::{ChatRequest, Message, ModelClient, OpenAiClient, ProviderSettings, Target};
//! let target = Target {
//!     provider: ProviderSettings::new("local", "http://127.0.0.1:11434/v1"),
//!     model: "qwen3:8b".into(),
//! };
//! let client = OpenAiClient::single(target)?;
//! let request = ChatRequest { messages: vec![Message::user("Hello")], ..Default::default() };
//! let answer = deputy_llm::collect(client.stream(request)).await?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```

mod accumulate;
mod breaker;
pub mod catalog;
mod client;
mod config;
mod error;
mod failure;
mod local;
mod overflow;
mod protocol;
mod read;
pub mod retry;
mod sse;
mod think;
mod types;
pub mod window;
mod window_cache;
pub mod wire;

pub use breaker::{Admission, Breaker, BreakerConfig};
pub use client::{Breakers, OpenAiClient, install_crypto_provider};
pub use config::{
    ANTHROPIC_BASE_URL, Env, LlmConfig, ModelConfig, OPENAI_BASE_URL, Price, ProviderConfig,
    ProviderSettings, Resolved, Source, Target,
};
pub use error::LlmError;
pub use failure::status_error;
pub use local::{LOCAL_PORTS_ENV, LOCAL_SERVERS, LocalServer, discover_local, local_servers};
pub use overflow::is_context_overflow;
pub use retry::RetryPolicy;
pub use types::{
    Api, Carried, ChatRequest, Collector, Completion, EventStream, FinishReason, Message,
    ModelClient, ModelEvent, Observed, Reasoning, ToolCall, ToolSpec, Usage, collect,
};
pub use window::{ContextWindow, DEFAULT_WINDOW, WindowSource};
pub use window_cache::remember_windows_in;
