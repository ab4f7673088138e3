//! A real PostgreSQL server for a test: a fresh cluster in a temporary directory, on a free
//! loopback port, stopped (and removed) when dropped. PostgreSQL refuses to run as root, so as
//! root it runs as the `postgres` user (Debian's `postgresql` package makes it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::outside;

pub struct Postgres {
    /// `postgres://deputy@127.0.0.1:PORT/postgres`
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the server programs are: on PATH, else Debian's versioned directory (newest).
fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("initdb").is_file() && d.join("postgres").is_file() {
                return Some(d);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    found.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command that runs `program` as the user PostgreSQL accepts (`postgres` when we are root).
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Start a server, or `None` after a SKIP line (a failure under CI) when PostgreSQL is missing.
/// It does not sync to disk (a test's data need not survive a power cut).
pub fn start() -> Option<Postgres> {
    start_opts(false)
}

/// [`start`], syncing to disk as a production server does (for benchmarks).
pub fn start_durable() -> Option<Postgres> {
    start_opts(true)
}

fn start_opts(fsync: bool) -> Option<Postgres> {
    let Some(bin) = bin_dir() else {
        outside::missing(
            "PostgreSQL",
            "no initdb/postgres on PATH or under /usr/lib/postgresql",
            "apt-get install -y postgresql",
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            outside::missing(
                "PostgreSQL",
                "running as root and there is no `postgres` user to run the server as",
                "apt-get install -y postgresql",
            );
            return None;
        }
    }
    let data = dir.path().join("data");
    let init = as_pg(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "deputy", "--no-sync"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = as_pg(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(dir.path())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", if fsync { "fsync=on" } else { "fsync=off" }])
        .args(["-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let pg = Postgres {
        url: format!("postgres://deputy@127.0.0.1:{port}/postgres"),
        child,
        _dir: dir,
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ready to accept connections") {
            return Some(pg);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "PostgreSQL did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
