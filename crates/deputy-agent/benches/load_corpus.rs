//! Load and validate every agent file of ../shared/corpus/agents, as `deputy agents validate`
//! does. Run with `cargo bench -p deputy-agent`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use deputy_agent::{LoadOptions, load_file_with};

fn corpus_files() -> Vec<PathBuf> {
    let root = std::env::var_os("DEPUTY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"))
        .join("agents");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    files
}

fn bench(c: &mut Criterion) {
    let files = corpus_files();
    let opts = LoadOptions::default();
    let mut group = c.benchmark_group("agents");
    group.bench_function(format!("load+validate {} corpus files", files.len()), |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for f in &files {
                if load_file_with(f, &opts).is_ok() {
                    ok += 1;
                }
            }
            ok
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
