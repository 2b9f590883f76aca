//! The floor under `chorus bench` on this machine: the same load shape with
//! everything but the messages taken away.
//!
//! One server process and one load process, each on a one-thread tokio
//! runtime like a replica and `chorus bench`. C connections each send a
//! request and wait for its reply; for each request the server also sends
//! a delivery to the next connection, as the leader delivers a direct
//! message to its recipient. The server is shaped like a replica: a reader
//! task per connection feeds one core task, which queues the reply and the
//! delivery for per-connection writer tasks that gather what is queued into
//! one write. There is no consensus, no follower, no disk and no state:
//! whatever Chorus does beyond this costs it on top of these figures.
//!
//! With `commit_us` above 0 the core answers requests in groups, as a
//! leader does after a group commit: a "disk" thread takes the group of
//! requests waiting, sleeps `commit_us` (in place of a write and an
//! fsync), and hands it back; one group is out at a time. That adds the
//! wait and the thread hand-offs, still with no disk and no peers.
//!
//! ```sh
//! cargo run --release -p chorus-bench --example loopback_floor -- [clients] [seconds] [commit_us]
//! ```

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Bytes of a request, a reply and a delivery: a little more than a
/// 100-byte send from `chorus bench` encodes to (146, 13 and 139 bytes
/// with the length prefix and its user names), so the floor does not
/// flatter itself.
const REQUEST_BYTES: usize = 170;
const REPLY_BYTES: usize = 24;
const DELIVERY_BYTES: usize = 160;
const REPLY: u8 = 1;
const DELIVERY: u8 = 2;
/// Seconds of load before the measured window opens.
const WARM_UP_SECS: u64 = 2;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if args.first().map(String::as_str) == Some("serve") {
        let port: u16 = args[1].parse()?;
        let clients: usize = args[2].parse()?;
        let commit = Duration::from_micros(args[3].parse()?);
        return runtime.block_on(serve(port, clients, commit));
    }
    let clients: usize = args.first().map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = args.get(1).map_or(Ok(10), |a| a.parse())?;
    let commit_us: u64 = args.get(2).map_or(Ok(0), |a| a.parse())?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let mut server = ServerProcess(
        Command::new(std::env::current_exe()?)
            .args(["serve", &port.to_string(), &clients.to_string(), &commit_us.to_string()])
            .spawn()?,
    );
    let result = runtime.block_on(load(([127, 0, 0, 1], port).into(), clients, seconds));
    server.stop();
    let (acks, mut latencies) = result?;
    latencies.sort_unstable();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "{{\"system\":\"loopback-floor\",\"clients\":{clients},\"commit_us\":{commit_us},\"ops\":{acks},\"seconds\":{seconds},\"ops_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{}}}",
        acks as f64 / seconds as f64,
        at(0.5).copied().unwrap_or(0),
        at(0.99).copied().unwrap_or(0),
    );
    Ok(())
}

/// The server child, killed when dropped.
struct ServerProcess(Child);

impl ServerProcess {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts `clients` connections, then serves them until killed,
/// answering at once or (`commit` above zero) a group at a time.
async fn serve(port: u16, clients: usize, commit: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let (core_tx, mut core_rx) = mpsc::channel::<usize>(8192);
    let mut writers = Vec::with_capacity(clients);
    for (index, stream) in streams.into_iter().enumerate() {
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
        writers.push(tx);
        tokio::spawn(write_loop(write, rx));
        tokio::spawn(read_loop(BufReader::new(read), index, core_tx.clone()));
    }
    drop(core_tx);
    let answer = |from: usize| {
        let _ = writers[from].try_send(frame(REPLY, REPLY_BYTES));
        let _ = writers[(from + 1) % clients].try_send(frame(DELIVERY, DELIVERY_BYTES));
    };
    if commit.is_zero() {
        while let Some(from) = core_rx.recv().await {
            answer(from);
        }
        return Ok(());
    }
    let (to_disk, mut from_disk) = disk_thread(commit);
    let (mut waiting, mut out) = (Vec::new(), false);
    loop {
        tokio::select! {
            from = core_rx.recv() => match from {
                Some(from) => waiting.push(from),
                None => return Ok(()), // every client has gone: the run is over
            },
            group = from_disk.recv() => {
                group.ok_or_else(|| anyhow::anyhow!("disk thread gone"))?.into_iter().for_each(answer);
                out = false;
            }
        }
        if !out && !waiting.is_empty() {
            to_disk.send(std::mem::take(&mut waiting))?;
            out = true;
        }
    }
}

/// A thread that holds each group it is given for `commit`, then hands it
/// back, as a storage thread does around its fsync.
fn disk_thread(commit: Duration) -> (std::sync::mpsc::Sender<Vec<usize>>, mpsc::Receiver<Vec<usize>>) {
    let (to_disk, groups) = std::sync::mpsc::channel::<Vec<usize>>();
    let (done, from_disk) = mpsc::channel(1);
    std::thread::spawn(move || {
        while let Ok(group) = groups.recv() {
            std::thread::sleep(commit);
            if done.blocking_send(group).is_err() {
                return;
            }
        }
    });
    (to_disk, from_disk)
}

/// A frame: a 4-byte length, then `kind` and padding to `bytes`.
fn frame(kind: u8, bytes: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + bytes);
    frame.extend_from_slice(&(bytes as u32).to_le_bytes());
    frame.push(kind);
    frame.resize(4 + bytes, b'.');
    frame
}

/// Reads one frame; returns its kind.
async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<u8> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await?;
    buf.resize(u32::from_le_bytes(prefix) as usize, 0);
    reader.read_exact(buf).await?;
    Ok(buf.first().copied().unwrap_or(0))
}

async fn read_loop(mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>, index: usize, core: mpsc::Sender<usize>) {
    let mut buf = Vec::new();
    while read_frame(&mut reader, &mut buf).await.is_ok() {
        if core.send(index).await.is_err() {
            return;
        }
    }
}

/// Writes what is queued for one connection, gathered into one write.
async fn write_loop(mut writer: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut out = Vec::new();
    while let Some(first) = rx.recv().await {
        out.clear();
        out.extend_from_slice(&first);
        while let Ok(more) = rx.try_recv() {
            out.extend_from_slice(&more);
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Runs `clients` closed loops for the warm-up and `seconds` more; returns
/// the acknowledgements in the window and their latencies (µs).
async fn load(addr: SocketAddr, clients: usize, seconds: u64) -> anyhow::Result<(u64, Vec<u32>)> {
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        streams.push(connect(addr).await?);
    }
    let start = Instant::now() + Duration::from_secs(WARM_UP_SECS);
    let end = start + Duration::from_secs(seconds);
    let window = Arc::new((start, end));
    let tasks: Vec<_> = streams.into_iter().map(|stream| tokio::spawn(closed_loop(stream, window.clone()))).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((latencies.len() as u64, latencies))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            stream.set_nodelay(true)?;
            return Ok(stream);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the floor server at {addr} did not come up")
}

/// One client: send, read deliveries until the reply comes, repeat.
async fn closed_loop(stream: TcpStream, window: Arc<(Instant, Instant)>) -> std::io::Result<Vec<u32>> {
    let (start, end) = *window;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let (request, mut buf, mut latencies) = (frame(0, REQUEST_BYTES), Vec::new(), Vec::new());
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(latencies);
        }
        write.write_all(&request).await?;
        while read_frame(&mut reader, &mut buf).await? != REPLY {}
        let done = Instant::now();
        if sent >= start && done <= end {
            latencies.push(done.duration_since(sent).as_micros() as u32);
        }
    }
}
