//! The clients: concurrent tasks on the real client library, each one
//! recording every call it makes into the [`History`].
//!
//! - **Senders** (`s0`, `s1`, ...): closed loop, each sends uniquely
//!   numbered messages to random recipients, and one time in four posts
//!   one to the room [`ROOM`] instead, which every sender and recipient
//!   joined at the start.
//! - **Subscribers**, one per recipient (`r0`, `r1`, ...): connected with
//!   live delivery, they record each message handed over and mark it shown
//!   (so the library acknowledges it). Every 8-20 s each one flushes its
//!   acknowledgements and replaces its client with a new one (a new session
//!   and a new subscription), so redelivery after a reconnect is exercised.
//! - **Account workers**: create, delete, send between and list a small
//!   pool of names (`a-0`, `a-1`, ...), so operations on one name overlap.
//!   Their history goes to the linearizability checker.

use crate::history::{
    message_text, post_text, recipient_name, sender_name, Clock, Delivered, History, PostRecord, SendOutcome,
    SendRecord, ROOM,
};
use chorus_chat::ChatError;
use chorus_client::Endpoints;
use chorus_client::{Client, ClientError, ClientOptions, Delivery};
use chorus_lincheck::{AccountOp, AccountResult, Operation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The pattern account workers list: their pool and nothing else.
const POOL_PATTERN: &str = "^a-";
/// Pause between retries of a connect or a subscribe.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How many clients of each kind.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub senders: u16,
    pub recipients: u16,
    pub account_workers: usize,
    /// Names the account workers share.
    pub pool: usize,
}

impl Shape {
    pub const DEFAULT: Shape = Shape { senders: 8, recipients: 4, account_workers: 3, pool: 5 };
}

/// What every client task shares.
#[derive(Clone)]
struct Context {
    endpoints: Endpoints,
    history: Arc<History>,
    clock: Clock,
    shape: Shape,
}

/// The running clients.
pub struct Workload {
    stop_load: watch::Sender<bool>,
    stop_subscribers: watch::Sender<bool>,
    load: Vec<JoinHandle<()>>,
    subscribers: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Creates the senders' and recipients' accounts, then starts every task.
    pub async fn start(
        endpoints: Endpoints,
        history: Arc<History>,
        clock: Clock,
        shape: Shape,
        seed: u64,
    ) -> anyhow::Result<Workload> {
        let context = Context { endpoints, history, clock, shape };
        create_accounts(&context).await?;
        let (stop_load, _) = watch::channel(false);
        let (stop_subscribers, _) = watch::channel(false);
        let mut rngs = ChaCha8Rng::seed_from_u64(seed);
        let mut load = Vec::new();
        for sender in 0..shape.senders {
            let task = send_loop(context.clone(), sender, rngs.random(), stop_load.subscribe());
            load.push(tokio::spawn(task));
        }
        for worker in 0..shape.account_workers {
            let task = account_loop(context.clone(), worker, rngs.random(), stop_load.subscribe());
            load.push(tokio::spawn(task));
        }
        let subscribers = (0..shape.recipients)
            .map(|r| tokio::spawn(subscribe_loop(context.clone(), r, rngs.random(), stop_subscribers.subscribe())))
            .collect();
        Ok(Workload { stop_load, stop_subscribers, load, subscribers })
    }

    /// Stops the senders and account workers; each finishes its call in flight.
    pub async fn stop_load(&mut self) {
        let _ = self.stop_load.send(true);
        for task in self.load.drain(..) {
            let _ = task.await;
        }
    }

    /// Stops the subscribers after they flush their acknowledgements.
    pub async fn stop_subscribers(&mut self) {
        let _ = self.stop_subscribers.send(true);
        for task in self.subscribers.drain(..) {
            let _ = task.await;
        }
    }
}

fn options() -> ClientOptions {
    ClientOptions::default()
}

/// Every account the workload creates has this password.
const PASSWORD: &str = "chaos-password";

/// Signs `client` in as `name`, retrying until it works or `stop` is raised.
async fn sign_in(client: &Client, name: &str, stop: &watch::Receiver<bool>) -> bool {
    loop {
        if *stop.borrow() {
            return false;
        }
        match client.sign_in(name, PASSWORD).await {
            Ok(()) => return true,
            Err(error) => tracing::debug!(%name, %error, "chaos sign-in failed; retrying"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A client, retrying until one connects or `stop` is raised.
async fn connect(context: &Context, stop: &watch::Receiver<bool>) -> Option<Client> {
    loop {
        if *stop.borrow() {
            return None;
        }
        match Client::connect_with(context.endpoints.clone(), options()).await {
            Ok(client) => return Some(client),
            Err(error) => tracing::debug!(%error, "chaos client cannot connect yet"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn create_accounts(context: &Context) -> anyhow::Result<()> {
    let client = Client::connect_with(context.endpoints.clone(), options()).await?;
    let senders = (0..context.shape.senders).map(sender_name);
    let recipients = (0..context.shape.recipients).map(recipient_name);
    for name in senders.chain(recipients) {
        client.create(&name, PASSWORD).await?;
        client.sign_in(&name, PASSWORD).await?;
        client.join(&name, ROOM).await?;
    }
    Ok(())
}

async fn send_loop(context: Context, sender: u16, seed: u64, stop: watch::Receiver<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Some(client) = connect(&context, &stop).await else { return };
    let from = sender_name(sender);
    if !sign_in(&client, &from, &stop).await {
        return;
    }
    for seq in 0u32.. {
        if *stop.borrow() {
            return;
        }
        let start = context.clock.now();
        if rng.random_range(0..4) == 0 {
            let result = client.say(&from, ROOM, &post_text(sender, seq)).await;
            let (end, outcome) = ended(&context, result);
            context.history.record_post(PostRecord { sender, seq, start, end, outcome });
        } else {
            let recipient = rng.random_range(0..context.shape.recipients);
            let result = client.send(&from, &recipient_name(recipient), &message_text(sender, seq)).await;
            let (end, outcome) = ended(&context, result);
            context.history.record_send(SendRecord { sender, seq, recipient, start, end, outcome });
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
}

/// When and how a send or a post ended.
fn ended(context: &Context, result: Result<chorus_chat::MessageId, ClientError>) -> (Option<u64>, SendOutcome) {
    match result {
        Ok(id) => (Some(context.clock.now()), SendOutcome::Acked(id)),
        Err(error) if definite(&error) => (Some(context.clock.now()), SendOutcome::Refused),
        Err(_) => (None, SendOutcome::Unknown),
    }
}

/// True for an error that says the command took no effect.
fn definite(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Chat(_)
            | ClientError::BadRequest(_)
            | ClientError::NoReplicas
            | ClientError::Unauthorized(_)
            | ClientError::Throttled { .. }
    )
}

async fn subscribe_loop(context: Context, recipient: u16, seed: u64, stop: watch::Receiver<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while let Some(client) = connect(&context, &stop).await {
        let lifetime = Duration::from_millis(rng.random_range(8_000..20_000));
        if !run_subscription(&context, &client, recipient, lifetime, stop.clone()).await {
            return;
        }
        context.history.record_reconnect();
    }
}

/// One client's subscription: records deliveries until `lifetime` passes
/// and a flush succeeds (true: reconnect) or `stop` is raised (false).
async fn run_subscription(
    context: &Context,
    client: &Client,
    recipient: u16,
    lifetime: Duration,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let name = recipient_name(recipient);
    let Some(mut deliveries) = client.deliveries() else { return false };
    if !sign_in(client, &name, &stop).await || !subscribe(client, &name, &stop).await {
        return false;
    }
    let mut renew_at = tokio::time::Instant::now() + lifetime;
    loop {
        tokio::select! {
            delivery = deliveries.recv() => match delivery {
                Some(Delivery::Message(message)) => {
                    let at = context.clock.now();
                    client.shown(&name, message.id);
                    record(context, recipient, message, at);
                }
                Some(Delivery::Ended { reason, .. }) => {
                    tracing::info!(%name, %reason, "chaos subscription ended; subscribing again");
                    if !subscribe(client, &name, &stop).await {
                        return false;
                    }
                }
                None => return false,
            },
            () = tokio::time::sleep_until(renew_at) => {
                if client.flush().await.is_ok() {
                    return true;
                }
                renew_at = tokio::time::Instant::now() + Duration::from_secs(2);
            }
            _ = stop.changed() => {
                let _ = client.flush().await;
                return false;
            }
        }
    }
}

fn record(context: &Context, recipient: u16, message: chorus_chat::Message, at: u64) {
    let delivered =
        Delivered { recipient, id: message.id, from: message.from, room: message.room, text: message.text, at };
    context.history.record_delivery(delivered);
}

/// Subscribes, retrying until it works or `stop` is raised.
async fn subscribe(client: &Client, name: &str, stop: &watch::Receiver<bool>) -> bool {
    loop {
        if *stop.borrow() {
            return false;
        }
        match client.subscribe(name).await {
            Ok(()) => return true,
            Err(error) => tracing::debug!(%name, %error, "chaos subscribe failed; retrying"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn account_loop(context: Context, worker: usize, seed: u64, stop: watch::Receiver<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Some(client) = connect(&context, &stop).await else { return };
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..50))).await;
        let op = random_account_op(&mut rng, context.shape.pool);
        let invoked_at = context.clock.now();
        let reply = call(&client, &op).await;
        let completed = match reply {
            Reply::Known(result) => Some((context.clock.now(), result)),
            Reply::Unknown => None,
            Reply::Outside(error) => {
                tracing::warn!(%error, ?op, "account operation refused outside the checker's model");
                continue;
            }
            Reply::NotSignedIn(error) => {
                tracing::debug!(%error, ?op, "no sign-in for an account operation; skipped");
                continue;
            }
        };
        context.history.record_account_op(Operation { client: worker, op, invoked_at, completed });
    }
}

fn random_account_op(rng: &mut ChaCha8Rng, pool: usize) -> AccountOp {
    let roll = rng.random_range(0..100);
    let mut name = || format!("a-{}", rng.random_range(0..pool));
    match roll {
        0..35 => AccountOp::Create(name()),
        35..60 => AccountOp::Delete(name()),
        60..75 => AccountOp::Send { from: name(), to: name() },
        _ => AccountOp::List(Some(POOL_PATTERN.to_string())),
    }
}

/// An account call's reply, as the linearizability checker sees it.
enum Reply {
    Known(AccountResult),
    /// Timed out, or lost with its session.
    Unknown,
    /// A refusal the checker's model has no reply for (a limit, a bad request).
    Outside(ClientError),
    /// The sign-in before a delete or send failed; nothing was attempted.
    NotSignedIn(ClientError),
}

/// Runs `op`. A delete or a send first signs in as the account it acts
/// for; when that fails (the account does not exist, or the sign-in's
/// outcome is unknown) the operation is not made and not recorded: the
/// checker's model has no sign-in.
async fn call(client: &Client, op: &AccountOp) -> Reply {
    let acting_as = match op {
        AccountOp::Delete(name) | AccountOp::Send { from: name, .. } => Some(name),
        _ => None,
    };
    if let Some(name) = acting_as {
        if let Err(error) = client.sign_in(name, PASSWORD).await {
            return Reply::NotSignedIn(error);
        }
    }
    let result = match op {
        AccountOp::Create(name) => client.create(name, PASSWORD).await.map(|()| AccountResult::Ok),
        AccountOp::Delete(name) => client.delete(name).await.map(|()| AccountResult::Ok),
        AccountOp::Send { from, to } => client.send(from, to, "x").await.map(|_| AccountResult::Ok),
        AccountOp::List(pattern) => match client.list(pattern.as_deref()).await {
            Ok(list) if list.truncated => return Reply::Outside(ClientError::BadRequest("truncated list".into())),
            Ok(list) => Ok(AccountResult::Names(list.names)),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(result) => Reply::Known(result),
        Err(ClientError::Chat(ChatError::NameTaken { .. })) => Reply::Known(AccountResult::NameTaken),
        Err(ClientError::Chat(ChatError::NoSuchAccount { .. })) => Reply::Known(AccountResult::NoSuchAccount),
        Err(ClientError::Chat(ChatError::SenderUnknown { .. })) => Reply::Known(AccountResult::SenderUnknown),
        Err(error) if definite(&error) => Reply::Outside(error),
        Err(_) => Reply::Unknown,
    }
}
