//! `rediss://` against a private TLS redis-server, with a CA made for the test.
#![cfg(feature = "tls")]

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct TlsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the TLS test needs the openssl command to make its certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and redis-server on TLS only.
fn start_tls_server() -> TlsServer {
    let dir = std::env::temp_dir().join(format!("cacheable-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=cacheable test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .current_dir(&dir)
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not on PATH: run `bash scripts/test.sh`, which installs it");
    let server = TlsServer { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pong = Command::new("redis-cli")
            .current_dir(&server.dir)
            .args([
                "--tls",
                "--cacert",
                "ca.pem",
                "-p",
                &port.to_string(),
                "PING",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
            .unwrap_or(false);
        if pong {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "the TLS redis-server did not come up (is it built with TLS?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_caches_and_invalidates_over_tls() {
    let server = start_tls_server();
    let ca = std::fs::read(server.dir.join("ca.pem")).unwrap();
    let url = format!("rediss://127.0.0.1:{}/", server.port);
    let cache = Cache::new(
        Config::from_url(&url)
            .unwrap()
            .prefix("paycore")
            .tls_root_cert(ca),
    )
    .unwrap();

    let user_id = 123;
    let mut computed = 0;
    for _ in 0..2 {
        let v: String = Cacheable::new("user:<<user_id>>:profile")
            .on(&cache)
            .run_async(ctx! { user_id }, || async {
                computed += 1;
                "Ada".to_string()
            })
            .await;
        assert_eq!(v, "Ada");
    }
    // The sync path speaks TLS too.
    let sync: Option<String> =
        tokio::task::block_in_place(|| cache.get("user:123:profile")).unwrap();
    assert_eq!(sync.as_deref(), Some("Ada"));
    assert_eq!(computed, 1);
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    let n = Invalidate::new(["user:<<user_id>>:*"])
        .on(&cache)
        .now_async(ctx! { user_id })
        .await
        .unwrap();
    assert_eq!(n, 1);

    // Without the CA, the server's certificate is refused: a fault, answered around.
    let untrusted = Cache::new(Config::from_url(&url).unwrap().prefix("paycore")).unwrap();
    let v = Cacheable::new("k")
        .on(&untrusted)
        .run_async(ctx! {}, || async { 1 })
        .await;
    assert_eq!(v, 1);
    assert!(untrusted.stats().errors >= 1);
    assert!(untrusted.get_async::<i32>("k").await.is_err());
}
