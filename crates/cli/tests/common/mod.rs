//! Real-process test harness: a `chorus up` cluster in a temporary
//! directory, `chorus chat --json` clients on pipes, and kill -9.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The password of every account the tests create (chat clients get it
/// through `CHORUS_PASSWORD`).
pub const PASSWORD: &str = "test-password";

/// The binary under test, built by cargo for this test run.
pub fn chorus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
}

/// A base port with `count` free ports after it, below the kernel's
/// ephemeral range so a restarted replica can bind its port again
/// ([`chorus_chaos::ports`]). Tests in one binary run in parallel: each
/// call takes a fresh block, from a start that differs between test
/// binaries.
fn free_ports(count: u16) -> u16 {
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);
    let range = chorus_chaos::ports::listening_range();
    let blocks = u64::from(range.end - range.start) / 16;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
    let start = u64::from(std::process::id()) * 7919 + nanos;
    loop {
        let block = (start + NEXT_BLOCK.fetch_add(1, Ordering::SeqCst)) % blocks;
        let candidate = range.start + (block as u16) * 16;
        if chorus_chaos::ports::all_free(candidate, count) {
            return candidate;
        }
    }
}

/// A local cluster started with `chorus up`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub replicas: usize,
    pub port: u16,
    /// Extra flags for `chorus up` and every `chorus server`.
    pub server_args: Vec<String>,
    up: Option<Child>,
}

impl Cluster {
    /// Starts `replicas` replicas and waits for a leader.
    pub fn start(replicas: usize) -> Cluster {
        Cluster::start_with(replicas, &[])
    }

    /// Starts `replicas` replicas with extra server flags and waits for a leader.
    pub fn start_with(replicas: usize, server_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_ports(2 * replicas as u16);
        let server_args = server_args.iter().map(|arg| arg.to_string()).collect();
        let mut cluster = Cluster { dir, replicas, port, server_args, up: None };
        cluster.up();
        cluster
    }

    /// (Re)runs `chorus up` on this cluster's directory.
    pub fn up(&mut self) {
        let child = chorus()
            .args(["up", "--replicas", &self.replicas.to_string(), "--port", &self.port.to_string()])
            .args(&self.server_args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chorus up starts");
        self.up = Some(child);
        self.wait_for_leader(Duration::from_secs(20));
    }

    pub fn cluster_file(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    /// `chorus status --json`, one value per replica.
    pub fn status(&self) -> Vec<Value> {
        let output = chorus()
            .args(["status", "--json", "--cluster"])
            .arg(self.cluster_file())
            .output()
            .expect("chorus status runs");
        assert!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("status prints JSON"))
            .collect()
    }

    /// The id of the replica that reports itself leader, waiting up to `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if self.cluster_file().exists() {
                let leaders: Vec<u64> = self
                    .status()
                    .iter()
                    .filter(|s| s["role"] == "leader")
                    .map(|s| s["id"].as_u64().expect("id"))
                    .collect();
                if leaders.len() == 1 {
                    return leaders[0];
                }
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid_of(&self, id: u64) -> u32 {
        let status = self.status();
        let row = status.iter().find(|s| s["id"] == id).expect("replica listed");
        row["pid"].as_u64().expect("reachable replica has a pid") as u32
    }

    /// SIGKILL to replica `id`.
    pub fn kill9(&self, id: u64) {
        kill9(self.pid_of(id));
    }

    /// SIGKILL to every replica and to `chorus up` itself.
    pub fn kill9_everything(&mut self) {
        let pids: Vec<u32> = self.status().iter().filter_map(|s| s["pid"].as_u64()).map(|p| p as u32).collect();
        assert_eq!(pids.len(), self.replicas, "every replica reachable before the crash");
        if let Some(mut up) = self.up.take() {
            let _ = up.kill();
            let _ = up.wait();
        }
        for pid in pids {
            kill9(pid);
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Runs one replica directly (after it was killed).
    pub fn restart_replica(&self, id: u64) -> Child {
        let log_path = self.dir.path().join(format!("replica-{id}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("replica log");
        chorus()
            .args(["server", "--id", &id.to_string(), "--cluster"])
            .arg(self.cluster_file())
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("chorus server starts")
    }

    pub fn client(&self) -> ChatClient {
        ChatClient::start(&self.cluster_file())
    }
}

impl Cluster {
    /// Prints the last lines of every replica's log to stderr, so a test
    /// that fails (in CI above all) shows what the replicas were doing.
    fn print_log_tails(&self) {
        const LINES: usize = 60;
        for id in 0..self.replicas {
            let path = self.dir.path().join(format!("replica-{id}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Backtrace frames are indented; the panic message is not.
            let lines: Vec<&str> = text.lines().filter(|line| !line.starts_with("  ")).collect();
            let tail = &lines[lines.len().saturating_sub(LINES)..];
            eprintln!(
                "---- last {} lines of {} (backtraces left out) ----\n{}",
                tail.len(),
                path.display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tails();
        }
        if let Some(mut up) = self.up.take() {
            // SIGTERM so `up` stops its replicas.
            unsafe {
                libc::kill(up.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = up.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = up.kill();
        }
    }
}

pub fn kill9(pid: u32) {
    // SAFETY: kill(2) with a valid signal; the pid came from a replica we started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid} failed");
    wait_until_dead(pid);
}

/// Waits until `pid` has exited (gone, or a zombie its parent has not
/// reaped yet, with no thread left): only then has it released its files
/// and ports. A thread inside an fsync can outlive the main thread's exit.
fn wait_until_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let zombie = status.lines().any(|l| l.starts_with("State:") && l.contains("Z (zombie)"));
        let threads =
            status.lines().find_map(|l| l.strip_prefix("Threads:")).map_or(0, |n| n.trim().parse().unwrap_or(0));
        if status.is_empty() || (zombie && threads <= 1) {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} survived kill -9");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A `chorus chat --json` process driven through its standard input.
pub struct ChatClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Deliveries seen while waiting for replies.
    pub deliveries: Vec<Value>,
}

impl ChatClient {
    pub fn start(cluster_file: &Path) -> ChatClient {
        let mut child = chorus()
            .args(["chat", "--json", "--cluster"])
            .arg(cluster_file)
            .env("CHORUS_PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chorus chat starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("chat printed a line that is not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        ChatClient { child, stdin, lines, deliveries: Vec::new() }
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("chat reads stdin");
        stdin.flush().expect("flush");
    }

    /// Sends a command and returns its reply (deliveries meanwhile are kept).
    pub fn command(&mut self, line: &str) -> Value {
        self.send_line(line);
        self.next_reply(Duration::from_secs(30))
    }

    pub fn next_reply(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) if value["delivery"] == true => self.deliveries.push(value),
                Ok(value) => return value,
                Err(RecvTimeoutError::Timeout) => panic!("no reply within {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chat exited"),
            }
        }
    }

    /// Collects deliveries until `count` have been seen in total or `timeout` passes.
    pub fn wait_deliveries(&mut self, count: usize, timeout: Duration) -> &[Value] {
        let deadline = Instant::now() + timeout;
        while self.deliveries.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) if value["delivery"] == true => self.deliveries.push(value),
                Ok(other) => panic!("unexpected reply while waiting for deliveries: {other}"),
                Err(_) => break,
            }
        }
        &self.deliveries
    }

    /// Closes stdin and waits for the client to exit.
    pub fn quit(mut self) {
        self.send_line("quit");
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for ChatClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Texts of delivered messages, in the order they arrived (notices that
/// delivery ended carry no text and are skipped).
pub fn texts(deliveries: &[Value]) -> Vec<String> {
    deliveries.iter().filter_map(|d| d["text"].as_str()).map(str::to_string).collect()
}

/// Concurrent library clients sending to a cluster: sender `i` signs in as
/// account `s{i}` and sends to `r{(i + shift) % senders}`, each recipient
/// its own mailbox (a mailbox holds at most 100,000 messages).
pub struct SendLoad {
    pub file: chorus_proto::ClusterFile,
    pub senders: usize,
}

impl SendLoad {
    /// The cluster's replicas, with its TLS settings.
    pub fn endpoints(&self) -> chorus_client::Endpoints {
        chorus_client::Endpoints::from_cluster(&self.file).expect("the cluster file's TLS settings")
    }

    /// Creates the sender and recipient accounts.
    pub async fn create_accounts(&self) {
        let client = chorus_client::Client::connect(self.endpoints()).await.expect("client connects");
        for name in (0..self.senders).flat_map(|i| [format!("s{i}"), format!("r{i}")]) {
            client.create(&name, PASSWORD).await.expect("create");
        }
    }

    /// Sends `count` messages spread over the senders, message `i` with
    /// text `text(i)`; returns how many were acknowledged (the first error
    /// of each sender is printed).
    pub async fn push(&self, count: usize, shift: usize, text: fn(usize) -> String) -> usize {
        let mut tasks = Vec::new();
        for sender in 0..self.senders {
            let (endpoints, senders) = (self.endpoints(), self.senders);
            tasks.push(tokio::spawn(async move {
                let client = chorus_client::Client::connect(endpoints).await.expect("client connects");
                let (from, to) = (format!("s{sender}"), format!("r{}", (sender + shift) % senders));
                client.sign_in(&from, PASSWORD).await.expect("sign in");
                let mut acked = 0;
                for i in (sender..count).step_by(senders) {
                    match client.send(&from, &to, &text(i)).await {
                        Ok(_) => acked += 1,
                        Err(error) if acked == 0 => eprintln!("sender {sender}: {error}"),
                        Err(_) => {}
                    }
                }
                acked
            }));
        }
        let mut acked = 0;
        for task in tasks {
            acked += task.await.expect("sender task");
        }
        acked
    }
}
