//! What deputy knows of common hosted models without asking: list prices in US dollars per
//! million tokens (input, output, cached input), the context window and the most output
//! tokens, so cost, `--max-cost-usd` and compaction work without any config. Figures are the
//! providers' published figures as last checked (late 2025; they were not re-checked since, and
//! they change): `[pricing."provider/model"]` and `[models."provider/model"]` override any of
//! them, and a model not listed here has none until config or its server says.

use crate::config::Price;

/// One model: id, price (input, output, cached input), context window, most output tokens.
struct Facts {
    id: &'static str,
    price: (f64, f64, f64),
    window: u64,
    max_output: u64,
}

const fn m(id: &'static str, price: (f64, f64, f64), window: u64, max_output: u64) -> Facts {
    Facts {
        id,
        price,
        window,
        max_output,
    }
}

const TABLE: &[Facts] = &[
    // OpenAI
    m("gpt-5", (1.25, 10.0, 0.125), 400_000, 128_000),
    m("gpt-5-mini", (0.25, 2.0, 0.025), 400_000, 128_000),
    m("gpt-5-nano", (0.05, 0.4, 0.005), 400_000, 128_000),
    m("gpt-4.1", (2.0, 8.0, 0.5), 1_047_576, 32_768),
    m("gpt-4.1-mini", (0.4, 1.6, 0.1), 1_047_576, 32_768),
    m("gpt-4.1-nano", (0.1, 0.4, 0.025), 1_047_576, 32_768),
    m("gpt-4o", (2.5, 10.0, 1.25), 128_000, 16_384),
    m("gpt-4o-mini", (0.15, 0.6, 0.075), 128_000, 16_384),
    m("o3", (2.0, 8.0, 0.5), 200_000, 100_000),
    m("o4-mini", (1.1, 4.4, 0.275), 200_000, 100_000),
    // Anthropic (cached: cache reads)
    m("claude-opus-4-1", (15.0, 75.0, 1.5), 200_000, 32_000),
    m("claude-opus-4", (15.0, 75.0, 1.5), 200_000, 32_000),
    m("claude-sonnet-4-5", (3.0, 15.0, 0.3), 200_000, 64_000),
    m("claude-sonnet-4", (3.0, 15.0, 0.3), 200_000, 64_000),
    m("claude-haiku-4-5", (1.0, 5.0, 0.1), 200_000, 64_000),
    m("claude-3-5-haiku", (0.8, 4.0, 0.08), 200_000, 8_192),
    // Google (prices up to 200k tokens of prompt)
    m("gemini-2.5-pro", (1.25, 10.0, 0.31), 1_048_576, 65_536),
    m("gemini-2.5-flash", (0.3, 2.5, 0.075), 1_048_576, 65_536),
    m(
        "gemini-2.5-flash-lite",
        (0.1, 0.4, 0.025),
        1_048_576,
        65_536,
    ),
    // DeepSeek
    m("deepseek-chat", (0.28, 0.42, 0.028), 128_000, 8_192),
    m("deepseek-reasoner", (0.28, 0.42, 0.028), 128_000, 65_536),
    // Mistral
    m("mistral-large", (2.0, 6.0, 2.0), 131_072, 32_768),
    m("mistral-small", (0.1, 0.3, 0.1), 131_072, 32_768),
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

fn find(model: &str) -> Option<&'static Facts> {
    let m = normalize(model);
    TABLE.iter().find(|f| normalize(f.id) == m)
}

/// The shipped price of `model`, if it is a model the table knows.
pub fn known_price(model: &str) -> Option<Price> {
    find(model).map(|f| Price {
        input_per_mtok: f.price.0,
        output_per_mtok: f.price.1,
        cached_input_per_mtok: Some(f.price.2),
        cache_write_per_mtok: None,
    })
}

/// The shipped context window and most output tokens of `model`, if the table knows it.
pub fn known_window(model: &str) -> Option<(u64, u64)> {
    find(model).map(|f| (f.window, f.max_output))
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
        assert_eq!(known_window("openai/gpt-4o"), Some((128_000, 16_384)));
        assert!(known_window("qwen3:8b").is_none());
        assert!(known_price("mock-model").is_none());
    }
}
