//! Load and validate every agent file of ../shared/corpus/agents, as `deputy agents validate`
//! does; and how long the loader takes to refuse hostile files (a YAML alias bomb, a 1 TiB
//! sparse file), which the tests check by outcome only. Run with `cargo bench -p deputy-agent`.

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

/// An alias bomb: 10 levels of 9 references, 9^10 nodes if expanded.
fn alias_bomb() -> String {
    let mut bomb = String::from("---\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    bomb.push_str("---\n");
    bomb
}

fn hostile(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.md");
    std::fs::write(&bomb, alias_bomb()).unwrap();
    let big = dir.path().join("big.md");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let opts = LoadOptions::default();
    let mut group = c.benchmark_group("hostile");
    group.bench_function("refuse an alias bomb", |b| {
        b.iter(|| load_file_with(&bomb, &opts).is_err())
    });
    group.bench_function("refuse a 1 TiB file", |b| {
        b.iter(|| load_file_with(&big, &opts).is_err())
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    if std::env::var_os("DEPUTY_CORPUS").is_none()
        && !PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/agents")
            .is_dir()
    {
        eprintln!("SKIP the corpus benchmark: no ../shared/corpus (set DEPUTY_CORPUS)");
        return;
    }
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

criterion_group!(benches, bench, hostile);
criterion_main!(benches);
