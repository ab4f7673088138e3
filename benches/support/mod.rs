//! What the end-to-end benchmarks share: the binary they drive, their runtime, a median.

#![allow(dead_code)]

/// The release `deputy` binary (`DEPUTY_BIN`, else the one beside this benchmark).
pub fn deputy_bin() -> String {
    let bin = std::env::var("DEPUTY_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().unwrap();
        // target/release/deps/<bench>-… → target/release/deputy
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("deputy")
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&bin).exists(),
        "build the binary first: cargo build --release ({bin})"
    );
    bin
}

/// A runtime like deputy's own on this machine: two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
