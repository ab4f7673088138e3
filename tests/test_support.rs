//! The skip-or-fail rule of tests that need outside programs (tests/support/outside.rs).

#![allow(clippy::unwrap_used)]

#[path = "support/outside.rs"]
mod outside;

use outside::{missing_in, required_in};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn what_makes_outside_things_required() {
    assert!(!required_in(env(&[])));
    assert!(!required_in(env(&[("CI", "false")])));
    assert!(!required_in(env(&[("CI", "0")])));
    assert!(required_in(env(&[("CI", "true")])));
    assert!(required_in(env(&[("CI", "1")])));
    assert!(required_in(env(&[("DEPUTY_TEST_REQUIRE", "1")])));
    assert!(required_in(env(&[("DEPUTY_TEST_REQUIRE_SANDBOX", "1")])));
}

#[test]
fn missing_skips_when_not_required() {
    assert!(!missing_in(
        false,
        "a test",
        "no tmux",
        "apt-get install tmux"
    ));
}

#[test]
#[should_panic(expected = "is required here")]
fn missing_fails_when_required() {
    missing_in(true, "a test", "no tmux", "apt-get install tmux");
}
