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

/// The argument that makes a bench binary the [`Measured`] spawner.
pub const SPAWN: &str = "--spawn-measured";

/// A command's peak RSS and the moments it started and ended, as measured by a fresh process
/// of the bench's own binary that spawns it. Why not the bench itself: a child's peak RSS
/// starts from its parent's (the kernel keeps the larger of the two across `exec`), so a
/// program spawned by the bench, which holds the mock and a runtime (~18 MB), never measures
/// below that.
pub struct Measured {
    pub status: i32,
    pub peak_kb: i64,
    pub started: std::time::Instant,
    pub took: std::time::Duration,
}

fn monotonic_ns() -> u64 {
    // SAFETY: an all-zero timespec is a valid value to be filled in.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// When this process was started as the spawner (`BIN --spawn-measured OUT PROGRAM ARGS…`):
/// run PROGRAM (stdio and environment inherited), write "peak_kb start_ns end_ns" to OUT and
/// exit with its status. Call first thing in `main`.
pub fn spawner() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(SPAWN) {
        return;
    }
    let start = monotonic_ns();
    let child = std::process::Command::new(&args[3])
        .args(&args[4..])
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid pointers.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let end = monotonic_ns();
    std::fs::write(&args[2], format!("{} {start} {end}", usage.ru_maxrss)).unwrap();
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    });
}

/// A command for `program` run through the spawner, its measurements to go to `out`.
pub fn measured_command(program: &str, out: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.arg(SPAWN).arg(out).arg(program);
    c
}

/// Read what the spawner wrote to `out` after the command's exit `status`.
pub fn measured(status: i32, out: &std::path::Path) -> Measured {
    let text = std::fs::read_to_string(out).unwrap();
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (now, now_ns) = (std::time::Instant::now(), monotonic_ns());
    Measured {
        status,
        peak_kb: v[0] as i64,
        started: now - std::time::Duration::from_nanos(now_ns - v[1]),
        took: std::time::Duration::from_nanos(v[2] - v[1]),
    }
}
