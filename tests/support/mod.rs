//! A private `redis-server` per test: started on a free port, killed on drop, never the
//! shared server on 6379.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod failover;
pub mod logs;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Calls `read` until one call is answered by `cache`'s near tier (a near cache takes a
/// value read back from Redis once its tracking is confirmed, asynchronously), and returns
/// that answer. Fails the test after `within`.
pub fn first_near_hit<T>(
    cache: &cacheable::Cache,
    within: Duration,
    mut read: impl FnMut() -> T,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let before = cache.stats().near_hits;
        let v = read();
        if cache.stats().near_hits > before {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the near cache never served a hit"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// The extra arguments it was started with, for [`RedisServer::restart_in_place`].
    extra: Vec<String>,
}

/// A port nothing listens on (the listener that found it is closed).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let port = free_port();
            if let Some(server) = RedisServer::try_start_on(port) {
                return server;
            }
        }
        panic!("could not start a private redis-server after 5 attempts");
    }

    /// Starts a server on `port` (for restarts on the same address).
    pub fn start_on(port: u16) -> RedisServer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(server) = RedisServer::try_start_on(port) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "could not restart redis-server on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a server on a free port with extra `redis-server` arguments
    /// (`["--maxmemory", "2mb"]`, `["--replicaof", "127.0.0.1", "6390"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        for _ in 0..5 {
            if let Some(server) = RedisServer::try_start_with(free_port(), extra) {
                return server;
            }
        }
        panic!("could not start a private redis-server with {extra:?} after 5 attempts");
    }

    fn try_start_on(port: u16) -> Option<RedisServer> {
        RedisServer::try_start_with(port, &[])
    }

    pub fn try_start_with(port: u16, extra: &[&str]) -> Option<RedisServer> {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cacheable-redis-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = RedisServer::spawn(port, &dir, &extra)?;
        Some(RedisServer {
            child: Some(child),
            port,
            dir,
            extra,
        })
    }

    /// Starts `redis-server` on `port` in `dir` and waits for its PONG; `None` if it exited
    /// (most likely the port was taken) or never answered.
    fn spawn(port: u16, dir: &PathBuf, extra: &[String]) -> Option<Child> {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .args(extra);
        launch(&mut command, port, "server")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain blocking connection, for looking at the server behind the crate's back.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to the private redis-server")
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Kills the server (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        *self = RedisServer::start_on(self.port);
    }

    /// Kills the server (SIGKILL) and starts it again on the same port, in the same
    /// directory and with the same arguments: a cluster node comes back with its
    /// `nodes.conf` (a failed-over primary rejoins as a replica).
    pub fn restart_in_place(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = RedisServer::spawn(self.port, &self.dir, &self.extra) {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "could not restart redis-server on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A paused server ignores SIGKILL until resumed on some kernels; resume first.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Redis Cluster of 3 primaries and 3 replicas, on free ports (and their cluster
/// bus ports, 10000 above), created with `redis-cli --cluster create`; every node killed on
/// drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// A port whose cluster bus port (10000 above) is free too, below the ephemeral range so
/// that neither is handed to an outgoing connection meanwhile.
fn free_cluster_port() -> u16 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let mut rng = Rng::new(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
            ^ (u64::from(std::process::id()) << 32)
            ^ u64::from(SEQ.fetch_add(1, Ordering::Relaxed)),
    );
    loop {
        let port = 12_000 + rng.below(10_000) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

/// The arguments that make a `redis-server` a cluster node of the tests.
pub const CLUSTER_NODE_ARGS: [&str; 6] = [
    "--cluster-enabled",
    "yes",
    "--cluster-node-timeout",
    "2000",
    "--cluster-config-file",
    "nodes.conf",
];

/// Joins `nodes` (started with [`CLUSTER_NODE_ARGS`]) into a cluster with `replicas`
/// replicas per primary (`redis-cli --cluster create`).
pub fn create_cluster(nodes: &[RedisServer], replicas: u8) -> Result<(), String> {
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run redis-cli --cluster create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

impl RedisCluster {
    /// Starts six nodes, joins them into a cluster with one replica per primary, and waits
    /// until every node says `cluster_state:ok` and every replica is in sync.
    pub fn start() -> RedisCluster {
        for attempt in 0..3 {
            match RedisCluster::try_start() {
                Ok(cluster) => return cluster,
                Err(why) => eprintln!("cluster start {attempt} failed: {why}; retrying"),
            }
        }
        panic!("could not start a private redis cluster after 3 attempts");
    }

    fn try_start() -> Result<RedisCluster, String> {
        let mut nodes = Vec::new();
        while nodes.len() < 6 {
            let port = free_cluster_port();
            // Replicas sync at once rather than after the default 5 s.
            let args = [&CLUSTER_NODE_ARGS[..], &["--repl-diskless-sync-delay", "0"]].concat();
            if let Some(node) = RedisServer::try_start_with(port, &args) {
                nodes.push(node);
            }
        }
        create_cluster(&nodes, 1)?;
        let cluster = RedisCluster { nodes };
        cluster.wait_ready(Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// Waits until every live node sees the cluster as ok, with every slot served by a live
    /// primary, and every live replica in sync with its primary.
    pub fn wait_ready(&self, within: Duration) -> Result<(), String> {
        ready_within("cluster", within, || self.ready())
    }

    fn ready(&self) -> Result<(), String> {
        let live: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.pid().is_some()).collect();
        let mut replicas = 0;
        for node in &live {
            let info = cli_quiet(node.port, &["CLUSTER", "INFO"]);
            if !info.contains("cluster_state:ok") {
                return Err(format!("{} is not ok", node.port));
            }
            let replication = cli_quiet(node.port, &["INFO", "replication"]);
            if replication.contains("role:slave") {
                if !replication.contains("master_link_status:up") {
                    return Err(format!("replica {} is not in sync", node.port));
                }
                replicas += 1;
            } else if replication.lines().any(|l| {
                l.starts_with("slave") && l.contains("state=") && !l.contains("state=online")
            }) {
                // A replica still loading its first copy acknowledges no write (`WAIT`).
                return Err(format!("a replica of {} is not online yet", node.port));
            }
        }
        let primaries = self.primaries();
        if primaries.len() != 3 || primaries.iter().any(|p| !live.iter().any(|n| n.port == *p)) {
            return Err(format!("primaries {primaries:?}"));
        }
        // Every live node that is no primary has become a replica (a new cluster's nodes
        // take their roles over a moment).
        if replicas + primaries.len() != live.len() {
            return Err(format!(
                "{replicas} replicas in sync among {} live nodes",
                live.len()
            ));
        }
        // And every live node has heard of them (gossip): the crate counts a primary's
        // replicas from one node's `CLUSTER NODES`.
        for node in &live {
            let listed = cli_quiet(node.port, &["CLUSTER", "NODES"]);
            let seen = listed
                .lines()
                .filter(|l| {
                    let flags = l.split(' ').nth(2).unwrap_or("");
                    flags.contains("slave") && !flags.contains("fail")
                })
                .count();
            if seen != replicas {
                return Err(format!(
                    "{} lists {seen} of the {replicas} replicas",
                    node.port
                ));
            }
        }
        Ok(())
    }

    /// A seed list of every node: `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    fn any_live(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.pid().is_some() && ping(n.port))
            .expect("a live cluster node")
    }

    /// The ports of the primaries that serve slots, as a live node sees them.
    pub fn primaries(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .slot_ranges()
            .into_iter()
            .map(|(_, _, port)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// `(first slot, last slot, primary port)` for each range.
    fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        let node = self.any_live();
        let mut con = node.client();
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut con)
            .expect("CLUSTER SLOTS");
        ranges
            .into_iter()
            .map(|range| {
                let redis::Value::Array(items) = range else {
                    panic!("CLUSTER SLOTS entry {range:?}")
                };
                let int = |v: &redis::Value| match v {
                    redis::Value::Int(n) => *n as u16,
                    other => panic!("{other:?}"),
                };
                let redis::Value::Array(primary) = &items[2] else {
                    panic!("{:?}", items[2])
                };
                (int(&items[0]), int(&items[1]), int(&primary[1]))
            })
            .collect()
    }

    /// The port of the primary that holds `key`.
    pub fn primary_of(&self, key: &str) -> u16 {
        let node = self.any_live();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut node.client())
            .expect("CLUSTER KEYSLOT");
        self.slot_ranges()
            .into_iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, port)| port)
            .expect("a primary for every slot")
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node on that port")
    }

    /// The keys matching `pattern` that the node on `port` holds (by SCAN).
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        let mut con = self.node(port).client();
        let mut keys: Vec<String> = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000_000)
            .query::<(u64, Vec<String>)>(&mut con)
            .expect("SCAN")
            .1;
        keys.sort();
        keys
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node on that port")
            .kill();
    }
}

/// `redis-cli -p port args…`, its output, or nothing if it failed.
fn cli_quiet(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    // A server with a password answers, though not with PONG.
    s.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
}

/// A small deterministic generator, so property tests reproduce from their seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A string of up to `max_len` characters drawn from `alphabet`.
    pub fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

/// A private Redis Sentinel setup: a primary, one replica and three Sentinels (quorum 2,
/// `down-after-milliseconds` 1000), every process on a free port in a temporary directory,
/// announcing 127.0.0.1, and every one killed on drop.
pub struct RedisSentinel {
    /// The data nodes: the first started as the primary, the second as its replica.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
    pub service: String,
    /// The data nodes' password, if they have one.
    pub password: Option<String>,
    /// The Sentinels' password, if they have one.
    pub sentinel_password: Option<String>,
}

/// One `redis-server sentinel.conf --sentinel`.
pub struct SentinelProcess {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl SentinelProcess {
    fn try_start(
        primary: u16,
        service: &str,
        auth: Option<&str>,
        requirepass: Option<&str>,
    ) -> Option<SentinelProcess> {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "cacheable-sentinel-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel announce-ip 127.0.0.1\n\
             sentinel monitor {service} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 3000\n\
             sentinel parallel-syncs {service} 1\n",
            dir.display()
        );
        if let Some(pw) = auth {
            conf.push_str(&format!("sentinel auth-pass {service} {pw}\n"));
        }
        if let Some(pw) = requirepass {
            conf.push_str(&format!("requirepass {pw}\n"));
        }
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, conf).unwrap();
        let mut command = Command::new("redis-server");
        command.arg(&path).arg("--sentinel");
        let child = launch(&mut command, port, "Sentinels")?;
        Some(SentinelProcess {
            child: Some(child),
            port,
            dir,
        })
    }

    /// Kills the Sentinel (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisSentinel {
    /// Starts the primary, its replica and three Sentinels, and waits until every Sentinel
    /// sees the replica and the two other Sentinels, and the replica is in sync.
    pub fn start() -> RedisSentinel {
        RedisSentinel::start_with_passwords(None, None)
    }

    /// As [`start`](RedisSentinel::start), with `requirepass` (and `masterauth`) on the data
    /// nodes when `password` is given, and `requirepass` on the Sentinels when
    /// `sentinel_password` is.
    pub fn start_with_passwords(
        password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> RedisSentinel {
        for attempt in 0..3 {
            match RedisSentinel::try_start(password, sentinel_password) {
                Ok(s) => return s,
                Err(why) => eprintln!("sentinel start {attempt} failed: {why}; retrying"),
            }
        }
        panic!("could not start a private Redis Sentinel setup after 3 attempts");
    }

    fn try_start(
        password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Result<RedisSentinel, String> {
        let service = "cacheable".to_owned();
        let mut auth: Vec<&str> = Vec::new();
        if let Some(pw) = password {
            auth.extend(["--requirepass", pw, "--masterauth", pw]);
        }
        let common = [
            "--repl-diskless-sync-delay",
            "0",
            "--replica-announce-ip",
            "127.0.0.1",
        ];
        let primary = (0..5)
            .find_map(|_| {
                let args: Vec<&str> = common.iter().chain(&auth).copied().collect();
                RedisServer::try_start_with(free_port(), &args)
            })
            .ok_or("could not start the primary")?;
        let primary_port = primary.port.to_string();
        let replica = (0..5)
            .find_map(|_| {
                let mut args: Vec<&str> = common.iter().chain(&auth).copied().collect();
                args.extend(["--replicaof", "127.0.0.1", &primary_port]);
                RedisServer::try_start_with(free_port(), &args)
            })
            .ok_or("could not start the replica")?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let s = (0..5)
                .find_map(|_| {
                    SentinelProcess::try_start(primary.port, &service, password, sentinel_password)
                })
                .ok_or("could not start a Sentinel")?;
            sentinels.push(s);
        }
        let setup = RedisSentinel {
            nodes: vec![primary, replica],
            sentinels,
            service,
            password: password.map(str::to_owned),
            sentinel_password: sentinel_password.map(str::to_owned),
        };
        setup.wait_ready(Duration::from_secs(20))?;
        Ok(setup)
    }

    /// Waits until every live Sentinel names a primary that reports the `master` role, sees
    /// the other Sentinels, and every live replica is in sync.
    pub fn wait_ready(&self, within: Duration) -> Result<(), String> {
        ready_within("Sentinels", within, || self.ready())
    }

    fn ready(&self) -> Result<(), String> {
        let live = self.sentinels.iter().filter(|s| s.child.is_some()).count();
        let primary = self.primary_port().ok_or("no Sentinel names a primary")?;
        for s in self.sentinels.iter().filter(|s| s.child.is_some()) {
            let info = self.sentinel_cli(s.port, &["INFO", "sentinel"]);
            let want = format!("address=127.0.0.1:{primary},slaves=");
            if !info.contains(&want) || !info.contains(&format!("sentinels={live}")) {
                return Err(format!("Sentinel {}: {}", s.port, info.trim()));
            }
        }
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let replication = self.node_cli(node.port, &["INFO", "replication"]);
            if node.port == primary && !replication.contains("role:master") {
                return Err(format!("{} is named primary but is not", node.port));
            }
            if node.port != primary
                && !(replication.contains("role:slave")
                    && replication.contains("master_link_status:up")
                    && replication.contains(&format!("master_port:{primary}")))
            {
                return Err(format!("replica {} is not in sync", node.port));
            }
        }
        Ok(())
    }

    /// The primary's port, as the first live Sentinel that answers names it.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels
            .iter()
            .filter(|s| s.child.is_some())
            .find_map(|s| {
                let out = self.sentinel_cli(
                    s.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.service],
                );
                out.lines().nth(1)?.trim().parse().ok()
            })
    }

    /// The data node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a data node on that port")
    }

    /// Kills the data node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a data node on that port")
            .kill();
    }

    /// Waits until the Sentinels name a primary other than `old` and it reports `master`.
    pub fn wait_failover(&self, old: u16, within: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(port) = self.primary_port().filter(|p| *p != old) {
                if self.node_cli(port, &["ROLE"]).starts_with("master") {
                    return Ok(port);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no failover away from {old} within {within:?}"))
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/SERVICE`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.service)
    }

    /// `redis-cli` against the Sentinel on `port`, with the Sentinels' password if any.
    pub fn sentinel_cli(&self, port: u16, args: &[&str]) -> String {
        let mut with: Vec<&str> = Vec::new();
        if let Some(pw) = &self.sentinel_password {
            with.extend(["--no-auth-warning", "-a", pw]);
        }
        with.extend(args);
        cli_quiet(port, &with)
    }

    /// `redis-cli` against the data node on `port`, with the data nodes' password if any.
    pub fn node_cli(&self, port: u16, args: &[&str]) -> String {
        let mut with: Vec<&str> = Vec::new();
        if let Some(pw) = &self.password {
            with.extend(["--no-auth-warning", "-a", pw]);
        }
        with.extend(args);
        cli_quiet(port, &with)
    }
}

/// A store for a suite of cases that runs on every store (`tests/backends.rs`,
/// `tests/freshness.rs`, `tests/per_call.rs`): the embedded one (`url: None`), one server,
/// a cluster or Sentinel, with or without the near cache; and, where a suite looks at a tag
/// set behind the crate's back, a `ZCARD` of a full key on the node that holds it.
pub struct Backend {
    pub name: &'static str,
    pub url: Option<String>,
    pub near: bool,
    pub zcard: Option<Zcard>,
}

/// `ZCARD` of a full key, behind the crate's back.
pub type Zcard = Box<dyn Fn(&str) -> i64>;

impl Backend {
    pub fn new(name: &'static str, url: Option<String>) -> Backend {
        Backend {
            name,
            url,
            near: false,
            zcard: None,
        }
    }

    /// The same store with the near cache on.
    pub fn near(mut self) -> Backend {
        self.near = true;
        self
    }

    pub fn with_zcard(mut self, zcard: impl Fn(&str) -> i64 + 'static) -> Backend {
        self.zcard = Some(Box::new(zcard));
        self
    }

    pub fn config(&self) -> cacheable::Config {
        let config = match &self.url {
            Some(url) => cacheable::Config::from_url(url).unwrap(),
            None => cacheable::Config::memory(),
        };
        if self.near {
            config.near_cache(10_000)
        } else {
            config
        }
    }

    /// A cache with the case's own prefix (its own with the near cache too: the variants
    /// with and without it share their servers).
    pub fn cache(&self, prefix: &str) -> cacheable::Cache {
        let near = if self.near { "-near" } else { "" };
        cacheable::Cache::new(self.config().prefix(format!("{prefix}{near}"))).unwrap()
    }

    /// A second cache on the same entries, as another process would have, when the store
    /// is shared; the same cache otherwise (the embedded store's caches never share).
    pub fn peer(&self, cache: &cacheable::Cache) -> cacheable::Cache {
        match &self.url {
            Some(_) => cacheable::Cache::new(cache.config().clone()).unwrap(),
            None => cache.clone(),
        }
    }
}

/// A multi-thread tokio runtime of `workers` threads.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-thread tokio runtime of `workers` threads without IO or time drivers (the crate
/// must not need them).
pub fn bare_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .unwrap()
}

/// A current-thread tokio runtime with its drivers.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A current-thread tokio runtime with neither an IO nor a time driver.
pub fn bare_current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A current-thread tokio runtime with a time driver but no IO driver.
pub fn current_thread_without_io() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A current-thread tokio runtime with an IO driver but no time driver.
pub fn current_thread_without_time() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

/// `suite![case, …]` defines `run_suite(&Backend)`, which runs each case in order on the
/// backend; a failing case names itself and the backend.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        fn run_suite(backend: &support::Backend) {
            $(
                let started = std::time::Instant::now();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $case(backend)));
                if let Err(panic) = run {
                    eprintln!("{}: case `{}` failed", backend.name, stringify!($case));
                    std::panic::resume_unwind(panic);
                }
                println!("{}: {} ok in {:?}", backend.name, stringify!($case), started.elapsed());
            )*
        }
    };
}
pub(crate) use suite;

/// Spawns a `redis-server` command (a server or a Sentinel, `what` in the message) and
/// waits for its PONG on `port`; `None` if it exited (most likely the port was taken) or
/// never answered. Without `redis-server` on PATH the test fails with how to get it.
fn launch(command: &mut Command, port: u16, what: &str) -> Option<Child> {
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "redis-server is not on PATH: the tests start their own {what}. \
             Run `bash scripts/test.sh`, which installs it where it can, or install Redis."
        ),
        Err(e) => panic!("could not spawn redis-server ({what}): {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if ping(port) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Polls `ready` until it holds or `within` has passed; the error names what was not
/// ready, with the last reason.
fn ready_within(
    what: &str,
    within: Duration,
    ready: impl Fn() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match ready() {
            Ok(()) => return Ok(()),
            Err(why) => last = why,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} not ready after {within:?}: {last}"))
}

/// Which variants of a store a suite runs on: without the near cache, with it, or both
/// (one after the other, on the same servers).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Near {
    Without,
    With,
    Both,
}

fn variants(near: Near) -> &'static [bool] {
    match near {
        Near::Without => &[false],
        Near::With => &[true],
        Near::Both => &[false, true],
    }
}

fn each_variant(
    near: Near,
    name: &'static str,
    make: impl Fn() -> Backend,
    run: impl Fn(&Backend),
) {
    for &with_near in variants(near) {
        let backend = make();
        let backend = if with_near { backend.near() } else { backend };
        let named = Backend {
            name: if with_near {
                format!("{name} + near").leak()
            } else {
                name
            },
            ..backend
        };
        run(&named);
    }
}

/// Runs a suite on the embedded store.
pub fn on_memory(near: Near, run: impl Fn(&Backend)) {
    each_variant(near, "memory", || Backend::new("memory", None), run);
}

/// Runs a suite on a private server; the backend counts tag entries by `ZCARD`.
#[cfg(feature = "redis")]
pub fn on_redis(near: Near, run: impl Fn(&Backend)) -> RedisServer {
    let server = std::sync::Arc::new(RedisServer::start());
    each_variant(
        near,
        "redis",
        || {
            let s = server.clone();
            Backend::new("redis", Some(server.url()))
                .with_zcard(move |key| redis::cmd("ZCARD").arg(key).query(&mut s.client()).unwrap())
        },
        run,
    );
    std::sync::Arc::try_unwrap(server).unwrap_or_else(|_| panic!("a backend outlived its suite"))
}

/// Runs a suite on a private cluster; the backend counts tag entries by `ZCARD` on the
/// primary that owns the key.
#[cfg(feature = "cluster")]
pub fn on_cluster(near: Near, run: impl Fn(&Backend)) -> RedisCluster {
    let cluster = std::sync::Arc::new(RedisCluster::start());
    each_variant(
        near,
        "cluster",
        || {
            let c = cluster.clone();
            Backend::new("cluster", Some(cluster.url())).with_zcard(move |key| {
                let port = c.primary_of(key);
                redis::cmd("ZCARD")
                    .arg(key)
                    .query(&mut c.node(port).client())
                    .unwrap()
            })
        },
        run,
    );
    std::sync::Arc::try_unwrap(cluster).unwrap_or_else(|_| panic!("a backend outlived its suite"))
}

/// Runs a suite on a private primary, replica and three Sentinels.
#[cfg(feature = "sentinel")]
pub fn on_sentinel(near: Near, run: impl Fn(&Backend)) -> RedisSentinel {
    let setup = RedisSentinel::start();
    each_variant(
        near,
        "sentinel",
        || Backend::new("sentinel", Some(setup.url())),
        run,
    );
    setup
}

/// The `#[test]` entry points of a suite, one per backend (each behind its feature):
/// `suite_tests! { memory = memory(Without), redis = redis(Both) }` runs `run_suite` on
/// the embedded store, then on a private server without and with the near cache.
macro_rules! suite_tests {
    ($($name:ident = $backend:ident($near:ident)),* $(,)?) => {
        $( support::suite_tests!(@one $name $backend $near); )*
    };
    (@one $name:ident memory $near:ident) => {
        #[test]
        fn $name() {
            support::on_memory(support::Near::$near, run_suite);
        }
    };
    (@one $name:ident redis $near:ident) => {
        #[cfg(feature = "redis")]
        #[test]
        fn $name() {
            support::on_redis(support::Near::$near, run_suite);
        }
    };
    (@one $name:ident cluster $near:ident) => {
        #[cfg(feature = "cluster")]
        #[test]
        fn $name() {
            support::on_cluster(support::Near::$near, run_suite);
        }
    };
    (@one $name:ident sentinel $near:ident) => {
        #[cfg(feature = "sentinel")]
        #[test]
        fn $name() {
            support::on_sentinel(support::Near::$near, run_suite);
        }
    };
}
pub(crate) use suite_tests;

/// A minimal executor that is not tokio: it parks the thread until woken.
pub fn park_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Waits until a computation has signalled that it started; a computation that never
/// starts fails the test here instead of hanging it.
pub fn wait_started(started: &std::sync::atomic::AtomicBool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !started.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the computation did not start within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Runs a test binary as a child process (a test that needs a fresh process: a global, the
/// environment) and fails with its output unless it passed.
pub fn assert_child_passes(cmd: &mut std::process::Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
