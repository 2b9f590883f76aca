//! The closed loop: C clients, each signed in as its own user and (unless
//! recipients are offline) connected for delivery, each sending to the next user and waiting for
//! the durable acknowledgement before its next send. In room mode every
//! user joins one room and stays connected, and the first C post to it.
//!
//! A message's text starts with the microsecond (on the benchmark's clock)
//! at which it was sent, so its recipient measures send-to-receipt
//! latency. Only sends that start after the warm-up and end before the
//! window closes are counted.

use crate::stats::Latencies;
use chorus_client::{Client, ClientOptions, Delivery, Endpoints};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, Semaphore};

/// Digits of the send timestamp at the start of each text.
const STAMP_DIGITS: usize = 20;
/// Clients setting up (connect, create, subscribe) at once.
const SETUP_CONCURRENCY: usize = 64;

/// What every client of one run shares.
pub struct Run {
    pub endpoints: Endpoints,
    /// Every user of the run; the first `senders` send.
    pub names: Vec<String>,
    pub senders: usize,
    /// Room mode: the room every user joins and the senders post to.
    pub room: Option<String>,
    pub payload: usize,
    /// Recipients connected for delivery (false: every message stays queued).
    pub online: bool,
    pub origin: Instant,
    /// Microseconds since `origin` when measuring starts and stops; set
    /// once every client is set up, before any sends.
    pub window_start: AtomicU64,
    pub window_end: AtomicU64,
    /// Acknowledgements counted so far (for the progress bar).
    pub acked: AtomicU64,
    /// The latest acknowledgement seen, in microseconds since `origin`.
    pub last_ack_us: AtomicU64,
    /// Set when the leader is killed (microseconds; `u64::MAX` before).
    pub killed_at_us: AtomicU64,
    /// `last_ack_us` at the kill.
    pub last_ack_before_kill_us: AtomicU64,
    /// The first acknowledgement after the kill (0 before).
    pub first_ack_after_kill_us: AtomicU64,
}

impl Run {
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn note_ack(&self, at: u64) {
        self.last_ack_us.fetch_max(at, Ordering::Relaxed);
        if at > self.killed_at_us.load(Ordering::Relaxed) {
            let _ = self.first_ack_after_kill_us.compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The measured window, in microseconds since `origin`.
    pub fn window(&self) -> (u64, u64) {
        (self.window_start.load(Ordering::Relaxed), self.window_end.load(Ordering::Relaxed))
    }

    fn in_window(&self, start: u64, end: u64) -> bool {
        let (from, to) = self.window();
        start >= from && end <= to
    }
}

/// What one client measured.
#[derive(Default)]
pub struct ClientFigures {
    pub acks: Latencies,
    pub deliveries: Latencies,
    pub errors: u64,
}

/// Sets up every client (concurrently, a bounded number at a time), waits
/// at `ready` until all are, then at `go` (the window is set between the
/// two), and runs them all until the window closes.
pub async fn run_clients(run: Arc<Run>, ready: Arc<Barrier>, go: Arc<Barrier>) -> anyhow::Result<Vec<ClientFigures>> {
    let setup = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = Vec::new();
    for index in 0..run.names.len() {
        let (run, setup, ready, go) = (run.clone(), setup.clone(), ready.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            let client = {
                let _permit = setup.acquire().await?;
                sign_in(&run, index).await
            };
            ready.wait().await;
            go.wait().await;
            let client = client?;
            if index >= run.senders {
                return Ok(listen(&run, &client).await);
            }
            Ok::<_, anyhow::Error>(closed_loop(&run, index, client).await)
        }));
    }
    let mut figures = Vec::new();
    for task in tasks {
        figures.push(task.await??);
    }
    Ok(figures)
}

/// Connects, creates this client's user and signs in as it.
async fn sign_in(run: &Run, index: usize) -> anyhow::Result<Client> {
    let options = ClientOptions { call_timeout: Duration::from_secs(30), ..ClientOptions::default() };
    let client = Client::connect_with(run.endpoints.clone(), options).await?;
    client.create(&run.names[index], crate::PASSWORD).await?;
    client.sign_in(&run.names[index], crate::PASSWORD).await?;
    if let Some(room) = &run.room {
        client.join(&run.names[index], room).await?;
    }
    Ok(client)
}

/// A room member that only receives, until the window closes.
async fn listen(run: &Run, client: &Client) -> ClientFigures {
    let me = client.signed_in_as().expect("signed in during setup");
    let receiver = tokio::spawn(receive(run.origin, run.window(), client.clone(), me.clone()));
    let _ = client.subscribe(&me).await;
    let deliveries = receiver.await.unwrap_or_default();
    ClientFigures { deliveries, ..ClientFigures::default() }
}

async fn closed_loop(run: &Run, index: usize, client: Client) -> ClientFigures {
    let me = &run.names[index];
    let to = &run.names[(index + 1) % run.names.len()];
    let receiver = run.online.then(|| tokio::spawn(receive(run.origin, run.window(), client.clone(), me.clone())));
    if run.online {
        let _ = client.subscribe(me).await;
    }
    let mut figures = ClientFigures::default();
    loop {
        let start = run.now_us();
        if start >= run.window().1 {
            break;
        }
        let text = text(start, run.payload);
        let result = match &run.room {
            Some(room) => client.say(me, room, &text).await,
            None => client.send(me, to, &text).await,
        };
        let end = run.now_us();
        match result {
            Ok(_) => {
                run.note_ack(end);
                if run.in_window(start, end) {
                    figures.acks.record(end - start);
                    run.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "bench send failed");
                figures.errors += u64::from(run.in_window(start, end));
            }
        }
    }
    if let Some(receiver) = receiver {
        if let Ok(deliveries) = receiver.await {
            figures.deliveries = deliveries;
        }
    }
    figures
}

/// The text of a message sent at `start`: its stamp, padded to `payload`
/// bytes (a payload shorter than the stamp carries no stamp).
fn text(start: u64, payload: usize) -> String {
    if payload < STAMP_DIGITS {
        return "x".repeat(payload.max(1));
    }
    let mut text = format!("{start:0width$}", width = STAMP_DIGITS);
    text.extend(std::iter::repeat_n('.', payload - STAMP_DIGITS));
    text
}

/// Reads deliveries until the window closes, marks each shown, and records
/// the latency of those stamped inside the window.
async fn receive(origin: Instant, window: (u64, u64), client: Client, me: String) -> Latencies {
    let mut latencies = Latencies::default();
    let Some(mut stream) = client.deliveries() else { return latencies };
    let close = tokio::time::Instant::from_std(origin + Duration::from_micros(window.1));
    while let Ok(Some(delivery)) = tokio::time::timeout_at(close, stream.recv()).await {
        let Delivery::Message(message) = delivery else { continue };
        client.shown(&me, message.id);
        let now = origin.elapsed().as_micros() as u64;
        let stamp = message.text.get(..STAMP_DIGITS).and_then(|s| s.parse::<u64>().ok());
        if let Some(sent) = stamp.filter(|&sent| sent >= window.0 && now <= window.1) {
            latencies.record(now.saturating_sub(sent));
        }
        if now > window.1 {
            break;
        }
    }
    latencies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_a_stamp_and_have_the_payload_size() {
        let t = text(1234, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(t[..STAMP_DIGITS].parse::<u64>().unwrap(), 1234);
        assert_eq!(text(5, 3), "xxx");
    }
}
