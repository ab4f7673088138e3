use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env(pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn cfg(toml_text: &str) -> LlmConfig {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn env_only() {
    let e = env(&[
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
        ("DEPUTY_MODEL", "m1"),
        ("OPENAI_API_KEY", "sk-test"),
    ]);
    let r = LlmConfig::default().resolve(&[], &e).unwrap();
    assert_eq!(r.primary.label(), "openai/m1");
    assert_eq!(r.primary.provider.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(r.primary.provider.api_key.as_deref(), Some("sk-test"));
    assert!(!format!("{:?}", r.primary).contains("sk-test"));
}

#[test]
fn the_anthropic_key_alone_is_a_provider() {
    let e = env(&[("ANTHROPIC_API_KEY", "sk-ant-x")]);
    let r = LlmConfig::default().resolve(&[], &e).unwrap();
    assert_eq!(r.primary.label(), "anthropic/claude-sonnet-4-5");
    assert_eq!(r.primary.provider.api, Api::Anthropic);
    assert_eq!(r.primary.provider.base_url, ANTHROPIC_BASE_URL);
    assert!(r.primary.provider.cache_control);
    let e = env(&[
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:4000"),
        ("OPENAI_API_KEY", "sk-o"),
    ]);
    let r = LlmConfig::default()
        .resolve(&[(Source::Flag, "anthropic/claude-haiku-4-5")], &e)
        .unwrap();
    assert_eq!(r.primary.provider.base_url, "http://127.0.0.1:4000/v1");
    assert_eq!(r.primary.provider.api_key, None);
    // OpenAI's variables make `openai` the default provider, as before.
    let r = LlmConfig::default()
        .resolve(&[(Source::Flag, "gpt-5")], &e)
        .unwrap();
    assert_eq!(r.primary.label(), "openai/gpt-5");
    // A configured provider says its protocol.
    let c = cfg(
        "[providers.r]\nbase_url = \"http://x/v1\"\napi = \"responses\"\nreasoning_effort = \"high\"\n",
    );
    let r = c
        .resolve(&[(Source::Flag, "r/m")], &Env::default())
        .unwrap();
    assert_eq!(r.primary.provider.api, Api::Responses);
    assert_eq!(
        r.primary
            .provider
            .reasoning
            .as_ref()
            .and_then(|x| x.effort()),
        Some("high".to_string())
    );
    assert!(toml::from_str::<LlmConfig>("[providers.r]\napi = \"claude\"\n").is_err());
}

#[test]
fn nothing_configured() {
    let err = LlmConfig::default()
        .resolve(&[], &Env::default())
        .unwrap_err();
    assert!(matches!(err, LlmError::NoModel));
}

#[test]
fn precedence_aliases_and_agent_fallthrough() {
    let c = cfg(r#"
model = "local/small"
[providers.local]
base_url = "http://127.0.0.1:1/v1"
model = "small"
fallback = ["other/big"]
[providers.other]
base_url = "http://127.0.0.1:2/v1"
[aliases]
opus = "other/big"
"#);
    let e = Env::default();
    // Agent alias configured.
    let r = c.resolve(&[(Source::Agent, "opus")], &e).unwrap();
    assert_eq!(r.primary.label(), "other/big");
    // Agent alias not configured → warning, default model.
    let r = c.resolve(&[(Source::Agent, "sonnet")], &e).unwrap();
    assert_eq!(r.primary.label(), "local/small");
    assert!(r.warnings[0].contains("sonnet"));
    // Unknown provider in the agent → warning; in a flag → treated as a model id.
    let r = c
        .resolve(&[(Source::Agent, "opencode/claude-haiku-4-5")], &e)
        .unwrap();
    assert_eq!(r.primary.label(), "local/small");
    let r = c
        .resolve(&[(Source::Flag, "meta-llama/Llama-3")], &e)
        .unwrap();
    assert_eq!(r.primary.label(), "local/meta-llama/Llama-3");
    // Flag beats agent; fallbacks come from the provider.
    let r = c
        .resolve(&[(Source::Flag, "local/x"), (Source::Agent, "opus")], &e)
        .unwrap();
    assert_eq!(r.primary.label(), "local/x");
    assert_eq!(r.fallbacks[0].label(), "other/big");
    // Agent `inherit` is skipped silently.
    let r = c.resolve(&[(Source::Agent, "inherit")], &e).unwrap();
    assert!(r.warnings.is_empty());
}

#[test]
fn cost() {
    let c = cfg(r#"
[pricing."gpt-4o-mini"]
input_per_mtok = 0.15
output_per_mtok = 0.6
cached_input_per_mtok = 0.075
"#);
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 500_000,
        cached_input_tokens: 200_000,
        ..Default::default()
    };
    let cost = c.cost("openai", "gpt-4o-mini", &u).unwrap();
    assert!((cost - (0.8 * 0.15 + 0.2 * 0.075 + 0.5 * 0.6)).abs() < 1e-9);
    assert!(c.cost("openai", "unknown", &u).is_none());
    // Anthropic: writes to the cache at 1.25 times the input price, reads at the shipped
    // cached price (claude-sonnet-4-5: 3.0 in, 0.3 cached, 15.0 out).
    let u = Usage {
        input_tokens: 1_000_000,
        cached_input_tokens: 600_000,
        cache_write_input_tokens: 300_000,
        output_tokens: 100_000,
        ..Default::default()
    };
    let cost = c.cost("anthropic", "claude-sonnet-4-5", &u).unwrap();
    let want = 0.1 * 3.0 + 0.6 * 0.3 + 0.3 * 3.75 + 0.1 * 15.0;
    assert!((cost - want).abs() < 1e-9, "{cost} {want}");
}
