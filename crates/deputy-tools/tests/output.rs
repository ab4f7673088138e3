//! 100 MB of output: truncated for the model, capped for the journal, and memory stays flat.
//! (Its own test binary, so the peak RSS it reads is its own.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Env, exit_code, modes};

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn hundred_megabytes_of_output_do_not_grow_memory() {
    for (b, kept) in modes() {
        let env = Env::make(b, kept, |_| {});
        // Warm up, so allocator pools are counted before the measurement.
        env.bash("head -c 2000000 /dev/zero | tr '\\0' a; echo")
            .await;
        let before = peak_rss_kb();
        let out = env
            .bash("head -c 100000000 /dev/zero | tr '\\0' 'x'; echo; echo THE-END")
            .await;
        let after = peak_rss_kb();
        assert_eq!(exit_code(&out), Some(0), "{b:?}");
        assert_eq!(out.metadata["output_bytes"].as_u64(), Some(100_000_009));
        assert!(out.metadata["output_truncated"].as_bool().unwrap());
        assert!(
            out.content.len() < 32_000,
            "model text is {} bytes",
            out.content.len()
        );
        assert!(out.content.contains("THE-END"), "the tail is kept");
        assert!(out.content.contains("bytes of output omitted"));
        let full = out.metadata["output"].as_str().unwrap();
        assert!(
            full.len() < 1_200_000,
            "journal copy is {} bytes",
            full.len()
        );
        assert!(full.ends_with("THE-END\n"));
        let growth_mb = (after.saturating_sub(before)) as f64 / 1024.0;
        eprintln!("{b:?}: peak RSS grew {growth_mb:.1} MB for 100 MB of output");
        assert!(growth_mb < 16.0, "{b:?}: peak RSS grew {growth_mb:.1} MB");
    }
}
