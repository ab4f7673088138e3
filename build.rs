//! Release builds of `deputy` place the functions a session runs next to each other
//! (`bench/hot-symbols.txt`, made by `bench/order.sh`): the kernel maps a program's code 64 KB
//! around each page it touches, so the ~3 MB a session runs, spread over 29 MB of code, had it
//! map 13 MB; packed, about 4. Only where the linker is known to take the list (lld, which
//! rustc uses on x86_64 Linux since 1.90, or mold); elsewhere the build is as it was.
//! `DEPUTY_PLAIN_LINK=1` turns it off.

// A build script speaks to cargo on stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bench/hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=DEPUTY_PLAIN_LINK");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let list = PathBuf::from(env("CARGO_MANIFEST_DIR")).join("bench/hot-symbols.txt");
    if env("PROFILE") != "release"
        || env("TARGET") != "x86_64-unknown-linux-gnu"
        || std::env::var_os("DEPUTY_PLAIN_LINK").is_some()
        || !linker_takes_an_order()
    {
        return;
    }
    if list.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=deputy=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        // Names the binary no longer has (a function renamed or inlined) are skipped quietly.
        println!("cargo:rustc-link-arg-bin=deputy=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the link uses lld or mold: named in the flags, or rustc's own default (1.90+).
fn linker_takes_an_order() -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("fuse-ld") || flags.contains("linker") {
        return flags.contains("lld") || flags.contains("mold");
    }
    if std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .and_then(|v| v.split('.').nth(1))
        .and_then(|minor| minor.parse::<u32>().ok())
        .is_some_and(|minor| minor >= 90)
}
