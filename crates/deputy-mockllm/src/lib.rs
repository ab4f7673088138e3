//! A scripted OpenAI-compatible HTTP server for tests, demos and benchmarks: it plays tool calls,
//! answers and faults from a script, and logs every request so tests can assert what was sent.
