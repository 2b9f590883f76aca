//! Unit and property tests for the chat state machine. Each asserts whole
//! values (`Applied`, `ListResult`, errors), not single fields.

mod apply;
mod determinism;
mod list;
mod rooms;
mod sessions;
mod snapshot;
mod tokens;
mod validate;

use crate::state::Bounds;
use crate::{Applied, ChatError, ChatState, ClientId, Command, Outcome, Proposal, StateEvent};

/// The client most tests drive.
const CLIENT: ClientId = 42;

/// Timestamp the helpers stamp on a proposal with sequence number `seq`.
fn millis(seq: u64) -> u64 {
    1_000 + seq
}

/// A proposal with a timestamp derived from its sequence number.
fn proposal(client: ClientId, seq: u64, command: Command) -> Proposal {
    Proposal::new(client, seq, millis(seq), command)
}

/// The `Applied` a test expects.
fn applied(client: ClientId, seq: u64, reply: Result<Outcome, ChatError>, event: Option<StateEvent>) -> Applied {
    Applied { client, seq, reply, event }
}

/// A well-formed argon2id PHC string; the state machine never verifies it.
pub(crate) const HASH: &str = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHQ$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";

fn create(name: &str) -> Command {
    Command::Create { name: name.to_string(), password_hash: HASH.to_string() }
}

fn delete(name: &str) -> Command {
    Command::Delete { name: name.to_string() }
}

fn send(from: &str, to: &str, text: &str) -> Command {
    Command::Send { from: from.to_string(), to: to.to_string(), text: text.to_string() }
}

fn ack(name: &str, through: u64) -> Command {
    Command::Ack { name: name.to_string(), through }
}

/// The chat part of the state (accounts, mailboxes, id counter), encoded:
/// what an error must leave byte-identical.
fn chat_bytes(state: &ChatState) -> Vec<u8> {
    postcard::to_stdvec(&(&state.accounts, state.last_message_id, &state.rooms, &state.broadcasts)).expect("encodes")
}

/// A state with one registered client that numbers its commands itself.
struct Harness {
    /// The state under test.
    state: ChatState,
    /// Sequence number of the last command `run` proposed.
    seq: u64,
    /// Bounds handed to `apply_bounded`.
    bounds: Bounds,
}

impl Harness {
    /// Real limits, `CLIENT` registered.
    fn new() -> Self {
        Self::with_bounds(Bounds::LIMITS)
    }

    /// Given bounds, `CLIENT` registered.
    fn with_bounds(bounds: Bounds) -> Self {
        let mut harness = Harness { state: ChatState::new(), seq: 0, bounds };
        let registered = harness.apply(&proposal(CLIENT, 0, Command::RegisterClient));
        assert_eq!(registered, applied(CLIENT, 0, Ok(Outcome::Registered), None));
        harness
    }

    /// Applies any proposal under the harness bounds.
    fn apply(&mut self, proposal: &Proposal) -> Applied {
        self.state.apply_bounded(proposal, self.bounds)
    }

    /// Proposes `command` as `CLIENT` with the next sequence number.
    fn run(&mut self, command: Command) -> Applied {
        self.seq += 1;
        let proposal = proposal(CLIENT, self.seq, command);
        self.apply(&proposal)
    }

    /// Runs `command` and asserts it succeeded with `outcome`.
    fn ok(&mut self, command: Command, outcome: Outcome) -> Applied {
        let result = self.run(command);
        assert_eq!(result.reply, Ok(outcome));
        result
    }

    /// Runs `command`, asserts the whole `Applied` is the error `error`, and
    /// that the chat part of the state did not change.
    fn fails(&mut self, command: Command, error: ChatError) {
        let before = chat_bytes(&self.state);
        let result = self.run(command);
        assert_eq!(result, applied(CLIENT, self.seq, Err(error), None));
        assert_eq!(chat_bytes(&self.state), before);
    }
}
