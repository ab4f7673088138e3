//! Prices of common hosted models, in US dollars per million tokens (input, output, cached
//! input), so cost and `--max-cost-usd` work without any `[pricing]` in config. Figures are the
//! providers' published list prices as last checked (late 2025; they were not re-checked since,
//! and prices change): `[pricing."provider/model"]` overrides any of them, and a model not
//! listed here has no price until config gives one.

use crate::config::Price;

/// (model id, input, output, cached input)
const TABLE: &[(&str, f64, f64, f64)] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.0, 0.125),
    ("gpt-5-mini", 0.25, 2.0, 0.025),
    ("gpt-5-nano", 0.05, 0.4, 0.005),
    ("gpt-4.1", 2.0, 8.0, 0.5),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025),
    ("gpt-4o", 2.5, 10.0, 1.25),
    ("gpt-4o-mini", 0.15, 0.6, 0.075),
    ("o3", 2.0, 8.0, 0.5),
    ("o4-mini", 1.1, 4.4, 0.275),
    // Anthropic (cached: cache reads)
    ("claude-opus-4-1", 15.0, 75.0, 1.5),
    ("claude-opus-4", 15.0, 75.0, 1.5),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3),
    ("claude-sonnet-4", 3.0, 15.0, 0.3),
    ("claude-haiku-4-5", 1.0, 5.0, 0.1),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08),
    // Google (up to 200k tokens of prompt)
    ("gemini-2.5-pro", 1.25, 10.0, 0.31),
    ("gemini-2.5-flash", 0.3, 2.5, 0.075),
    ("gemini-2.5-flash-lite", 0.1, 0.4, 0.025),
    // DeepSeek
    ("deepseek-chat", 0.28, 0.42, 0.028),
    ("deepseek-reasoner", 0.28, 0.42, 0.028),
    // Mistral
    ("mistral-large", 2.0, 6.0, 2.0),
    ("mistral-small", 0.1, 0.3, 0.1),
];

/// A model id as the table writes it: no provider prefix (`openai/`, `anthropic/`), dots as
/// dashes (`claude-sonnet-4.5`), no date suffix (`-20250929`) or `-latest`.
fn normalize(model: &str) -> String {
    let base = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let mut s = base.replace('.', "-");
    for suffix in ["-latest"] {
        if let Some(x) = s.strip_suffix(suffix) {
            s = x.to_string();
        }
    }
    // A trailing date: -YYYYMMDD or -YYYY-MM-DD.
    let parts: Vec<&str> = s.split('-').collect();
    let n = parts.len();
    if n > 1 && parts[n - 1].len() == 8 && parts[n - 1].chars().all(|c| c.is_ascii_digit()) {
        s = parts[..n - 1].join("-");
    } else if n > 3
        && parts[n - 3].len() == 4
        && parts[n - 3..]
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        s = parts[..n - 3].join("-");
    }
    s
}

/// The shipped price of `model`, if it is a model the table knows.
pub fn known_price(model: &str) -> Option<Price> {
    let m = normalize(model);
    TABLE
        .iter()
        .find(|(id, ..)| normalize(id) == m)
        .map(|(_, input, output, cached)| Price {
            input_per_mtok: *input,
            output_per_mtok: *output,
            cached_input_per_mtok: Some(*cached),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_providers_and_gateways_write_them() {
        for m in [
            "gpt-4o-mini",
            "openai/gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
        ] {
            assert_eq!(known_price(m).unwrap().input_per_mtok, 0.15, "{m}");
        }
        for m in [
            "anthropic/claude-sonnet-4.5",
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5",
        ] {
            assert_eq!(known_price(m).unwrap().output_per_mtok, 15.0, "{m}");
        }
        assert!(known_price("qwen3:8b").is_none());
        assert!(known_price("mock-model").is_none());
    }
}
