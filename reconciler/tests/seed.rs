//! Synthetic data against a real PostgreSQL server (Debian's `postgresql` package, installed by
//! `.ci/run`): the fixture's migrations are applied, `previewd seed`'s SQL is loaded in one
//! transaction, and the server itself checks every type, NOT NULL, UNIQUE, CHECK and foreign
//! key. The server runs from a temporary directory on a Unix socket of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The server's binaries (`initdb`, `pg_ctl`, `psql`) from the distribution's package.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found under /usr/lib/postgresql: install the `postgresql` package (.ci/run does)")
    })
}

/// Runs a server binary; as root it runs as `postgres` (initdb refuses root).
fn run(program: &Path, args: &[&str]) -> Output {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A server of its own, stopped (and its directory removed) when dropped.
struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("previewd-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The server's user must own its directory.
        let _ = Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).output();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = dir.join("data");
        ok(&run(&bin.join("initdb"), &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"]), "initdb");
        let options = format!("-p {port} -k {} -c listen_addresses=''", dir.display());
        ok(
            &run(
                &bin.join("pg_ctl"),
                &["-D", data.to_str().unwrap(), "-o", &options, "-l", dir.join("log").to_str().unwrap(), "-w", "start"],
            ),
            "pg_ctl start",
        );
        Server { bin, dir, port }
    }

    fn psql(&self, args: &[&str]) -> Output {
        let port = self.port.to_string();
        let mut all =
            vec!["-h", self.dir.to_str().unwrap(), "-p", &port, "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-X", "-q"];
        all.extend(args);
        run(&self.bin.join("psql"), &all)
    }

    /// Runs a file (readable by the server's user).
    fn file(&self, sql: &str, name: &str) -> Output {
        let path = self.dir.join(name);
        std::fs::write(&path, sql).unwrap();
        let _ = Command::new("chown").args(["postgres:postgres", path.to_str().unwrap()]).output();
        self.psql(&["-f", path.to_str().unwrap()])
    }

    fn count(&self, table: &str) -> usize {
        let out = ok(&self.psql(&["-t", "-A", "-c", &format!("SELECT count(*) FROM {table}")]), "count");
        out.trim().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = run(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn generated_rows_load_into_a_real_postgres() {
    let migrations = support::root().join("reconciler/tests/fixtures/seed/migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&migrations).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let schema: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap() + "\n").collect();
    let rows = 60;
    let data = previewd::cmd::seed::seed(&files, rows, 2026, previewd::cmd::seed::Format::Sql).unwrap();

    let server = Server::start();
    ok(&server.file(&schema, "schema.sql"), "the migrations");
    ok(&server.file(&data, "data.sql"), "the generated data");
    let tables = ["customers", "addresses", "categories", "products", "orders", "order_lines", "reviews"];
    for table in tables {
        assert_eq!(server.count(table), rows, "{table}");
    }
    // The sequences moved past the generated ids: the application's next insert works.
    ok(
        &server.psql(&[
            "-c",
            "INSERT INTO customers (email, first_name, last_name) VALUES ('new@example.com', 'New', 'Customer')",
        ]),
        "an insert after the seed",
    );
    // The server refuses what breaks a constraint: the check above is not vacuous.
    let duplicate =
        server.psql(&["-c", "INSERT INTO categories (slug, title) SELECT slug, title FROM categories LIMIT 1"]);
    assert!(!duplicate.status.success(), "a duplicate slug was accepted");
}
