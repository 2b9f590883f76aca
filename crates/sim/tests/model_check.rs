//! Exhaustive model checking of the consensus core with stateright.
//!
//! Three replicas run the real `chorus_paxos::Replica`. Every
//! nondeterministic choice is an action the checker explores in every
//! order: deliver or lose any message in flight, complete a replica's
//! pending fsyncs, crash a replica (losing unsynced writes) and restart it,
//! let a replica's election timer or a leader's heartbeat timer fire, and
//! propose one of two client commands at a leader. The checker visits every
//! reachable state up to a depth bound and requires, in all of them:
//!
//! - agreement: no two replicas ever learn different values for a slot,
//!   and a value learned chosen never changes (across crashes);
//! - durable promises: a replica never holds a promise below a ballot it
//!   already vouched for in a Promise or Accepted message;
//!
//!
//! The search is exhaustive only up to a depth bound: the state space grows
//! about 12-fold every two actions (release build: 5,167 states at depth 6,
//! 69,868 at 8, 915,280 at 10), while choosing one command takes about 12
//! actions and the failures the simulator's planted bugs provoke take about
//! 25. So this covers every interleaving of elections and phase 1 among
//! three replicas with losses, fsync orderings and a crash; deeper
//! behaviour is the simulator's job (see docs/TESTING.md). Set
//! `MODEL_DEPTH` to search deeper.

use chorus_paxos::{Ballot, Config, DurableState, Envelope, Event, Message, Replica, Role, Slot, Value, WriteBatch};
use stateright::{Checker, Model, Property};
use std::collections::BTreeMap;

const REPLICAS: u8 = 3;
const COMMANDS: u8 = 2;
const CRASHES: u8 = 1;
/// More messages in flight than this prunes the state (a bound, not a fault).
const IN_FLIGHT_MAX: usize = 6;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    /// `None` while crashed.
    replica: Option<Replica>,
    durable: DurableState,
    /// Writes handed out, not yet durable.
    pending: Vec<WriteBatch>,
    /// Highest ballot vouched for in a Promise or Accepted.
    vouched: Ballot,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    nodes: Vec<Node>,
    /// Messages in flight, kept sorted (a multiset).
    network: Vec<Envelope>,
    /// Values any replica ever learned chosen.
    chosen: BTreeMap<Slot, Value>,
    commands_left: u8,
    crashes_left: u8,
    /// Set when a safety property broke in a transition.
    broken: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Deliver(usize),
    Lose(usize),
    Persist(u8),
    Crash(u8),
    Restart(u8),
    ElectionTimeout(u8),
    Heartbeat(u8),
    Propose(u8),
}

struct PaxosModel;

fn config(id: u8) -> Config {
    Config {
        heartbeat_ticks: 1,
        election_ticks_min: 2,
        election_ticks_max: 3,
        catchup_retry_ticks: 2,
        ..Config::new(id, (0..REPLICAS).collect(), 7)
    }
}

fn boot(id: u8, durable: &DurableState) -> Replica {
    Replica::new(config(id), durable.clone(), 0)
}

impl State {
    /// Drains the replica's `Ready` into the model: write, messages, commits.
    fn drain(&mut self, id: u8) {
        let node = &mut self.nodes[id as usize];
        let Some(replica) = node.replica.as_mut() else { return };
        let ready = replica.ready();
        if let Some(write) = ready.write {
            node.pending.push(write);
        }
        for envelope in ready.messages {
            if let Message::Promise { ballot, .. } | Message::Accepted { ballot, .. } = envelope.message {
                node.vouched = node.vouched.max(ballot);
            }
            self.network.push(envelope);
        }
        self.network.sort_by_key(|e| format!("{e:?}"));
        for (slot, value) in ready.committed {
            match self.chosen.get(&slot) {
                Some(held) if *held != value => {
                    self.broken = Some(format!("slot {slot}: replica {id} learned {value:?}, earlier {held:?}"));
                }
                _ => {
                    self.chosen.insert(slot, value);
                }
            }
        }
        self.check_promise(id);
    }

    fn check_promise(&mut self, id: u8) {
        let node = &self.nodes[id as usize];
        if let Some(replica) = &node.replica {
            let promised = replica.status().promised;
            if promised < node.vouched {
                self.broken = Some(format!("replica {id} holds {promised} after vouching for {}", node.vouched));
            }
        }
    }

    fn step(&mut self, id: u8, event: Event) {
        if let Some(replica) = self.nodes[id as usize].replica.as_mut() {
            replica.step(event);
        }
        self.drain(id);
    }

    fn ticks(&mut self, id: u8, count: u64) {
        for _ in 0..count {
            self.step(id, Event::Tick);
        }
    }

    fn role(&self, id: u8) -> Option<Role> {
        self.nodes[id as usize].replica.as_ref().map(Replica::role)
    }
}

impl Model for PaxosModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let nodes = (0..REPLICAS)
            .map(|id| Node {
                replica: Some(boot(id, &DurableState::default())),
                durable: DurableState::default(),
                pending: Vec::new(),
                vouched: Ballot::ZERO,
            })
            .collect();
        let state = State {
            nodes,
            network: Vec::new(),
            chosen: BTreeMap::new(),
            commands_left: COMMANDS,
            crashes_left: CRASHES,
            broken: None,
        };
        vec![state]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.broken.is_some() {
            return;
        }
        for i in 0..state.network.len() {
            actions.push(Action::Deliver(i));
            actions.push(Action::Lose(i));
        }
        for id in 0..REPLICAS {
            let node = &state.nodes[id as usize];
            match state.role(id) {
                None => actions.push(Action::Restart(id)),
                Some(role) => {
                    if !node.pending.is_empty() {
                        actions.push(Action::Persist(id));
                    }
                    if state.crashes_left > 0 {
                        actions.push(Action::Crash(id));
                    }
                    if role == Role::Leader {
                        actions.push(Action::Heartbeat(id));
                        if state.commands_left > 0 {
                            actions.push(Action::Propose(id));
                        }
                    } else {
                        actions.push(Action::ElectionTimeout(id));
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Deliver(i) => {
                let envelope = state.network.remove(i);
                let to = envelope.to;
                state.step(to, Event::Receive(envelope));
            }
            Action::Lose(i) => {
                state.network.remove(i);
            }
            Action::Persist(id) => persist(&mut state, id),
            Action::Crash(id) => {
                let node = &mut state.nodes[id as usize];
                node.replica = None;
                node.pending.clear();
                state.crashes_left -= 1;
            }
            Action::Restart(id) => {
                let node = &mut state.nodes[id as usize];
                node.replica = Some(boot(id, &node.durable));
                state.drain(id);
            }
            Action::ElectionTimeout(id) => state.ticks(id, 3),
            Action::Heartbeat(id) => state.ticks(id, 1),
            Action::Propose(id) => {
                let command = vec![COMMANDS - state.commands_left];
                if let Some(replica) = state.nodes[id as usize].replica.as_mut() {
                    if replica.propose(command).is_ok() {
                        state.commands_left -= 1;
                    }
                }
                state.drain(id);
            }
        }
        Some(state)
    }

    fn within_boundary(&self, state: &State) -> bool {
        state.network.len() <= IN_FLIGHT_MAX
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("safe", |_, state: &State| state.broken.is_none()),
            Property::sometimes("a leader is elected", |_, state: &State| {
                (0..REPLICAS).any(|id| state.role(id) == Some(Role::Leader))
            }),
        ]
    }
}

/// Makes every pending write durable, then tells the replica.
fn persist(state: &mut State, id: u8) {
    let node = &mut state.nodes[id as usize];
    let Some(last) = node.pending.last().map(|w| w.id) else { return };
    for batch in node.pending.drain(..) {
        node.durable.apply(&batch);
    }
    state.step(id, Event::Persisted(last));
}

#[test]
fn every_interleaving_of_elections_among_three_replicas_is_safe() {
    let depth_max: usize = std::env::var("MODEL_DEPTH").ok().and_then(|d| d.parse().ok()).unwrap_or(9);
    let checker = PaxosModel.checker().target_max_depth(depth_max).spawn_bfs().join();
    println!(
        "model check: {} states, {} unique, depth bound {depth_max}",
        checker.state_count(),
        checker.unique_state_count()
    );
    checker.assert_no_discovery("safe");
    checker.assert_any_discovery("a leader is elected");
}
