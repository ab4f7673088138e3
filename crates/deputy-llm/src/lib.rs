//! The model side of deputy: a [`ModelClient`]-style trait and its OpenAI-compatible streaming
//! implementation, with retries, timeouts, a circuit breaker, usage and cost.
//!
//! For: talking to any Chat Completions endpoint and smoothing over how each server bends the
//! protocol. Not for: tools, agents or the session loop; this crate knows nothing of them.
