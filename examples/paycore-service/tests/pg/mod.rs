//! A private PostgreSQL per test: `initdb` into a temporary folder, `pg_ctl start` on a
//! free port of 127.0.0.1 (its unix socket in that folder too), stopped and removed on
//! drop. Never the shared server on 5432.
//!
//! PostgreSQL refuses to run as root: as root, the cluster is made and run by the
//! `postgres` user (Debian's package creates it) through `runuser`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<String>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// The folder of `initdb` and `pg_ctl`: `PG_BIN` if set, the newest
/// `/usr/lib/postgresql/*/bin` (Debian puts them there, off PATH), or PATH's.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's initdb and pg_ctl are not installed (looked in /usr/lib/postgresql/*/bin \
             and on PATH): the end-to-end test starts a private PostgreSQL. Run `bash scripts/test.sh`, \
             which installs it where it can (Debian: apt-get install postgresql), or set PG_BIN."
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgServer {
    pub fn start() -> PgServer {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir();
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = std::env::temp_dir().join(format!(
            "paycore-pg-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .args([user.as_str()])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "running as root, the private PostgreSQL runs as the `{user}` user, which must \
                 exist (Debian's postgresql package creates it): chown {} failed",
                dir.display()
            );
        }
        let mut server = PgServer {
            port: 0,
            dir,
            bin,
            run_as,
        };
        let data = server.dir.join("data");
        let out = server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=60",
                server.dir.display()
            );
            let log = server.dir.join("log");
            let out = server.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "30".as_ref(),
                    "start".as_ref(),
                ],
            );
            if out.status.success() {
                server.port = port;
                return server;
            }
            // Most likely the port was taken meanwhile: try another.
        }
        let log = std::fs::read_to_string(server.dir.join("log")).unwrap_or_default();
        panic!("could not start a private PostgreSQL after 5 attempts; its log:\n{log}");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: trust authentication, its own cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
        remove(&self.dir);
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
