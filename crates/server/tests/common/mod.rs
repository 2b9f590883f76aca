//! The shared harness of the machine tests: the real [`Machine`] of a
//! one-replica cluster ([`Lone`]), whose writes are persisted at once and
//! whose password jobs run inline with the real argon2id code (at the
//! smallest cost); every frame it writes lands in [`Frames`].

use chorus_paxos::{Config, DurableState, Event, Replica};
use chorus_proto::{ClientFrame, Request, RequestError, Response, ServerFrame};
use chorus_server::machine::{ConnId, Machine, Outbox, PushError};
use chorus_server::passwords::{self, HashCost};
use std::collections::BTreeMap;

const CHEAP: HashCost = HashCost { memory_kib: chorus_limits::PASSWORD_HASH_MEMORY_KIB_MIN };

/// Frames queued for each connection (never full).
#[derive(Default)]
pub struct Frames(pub BTreeMap<ConnId, Vec<ServerFrame>>);

impl Outbox for Frames {
    fn room(&self, _: ConnId) -> usize {
        usize::MAX
    }
    fn push(&mut self, conn: ConnId, frame: ServerFrame) -> Result<(), PushError> {
        self.0.entry(conn).or_default().push(frame);
        Ok(())
    }
    fn kick(&mut self, _: ConnId) {}
}

/// A one-replica cluster's machine, leading, with its effects carried out.
pub struct Lone {
    pub machine: Machine,
    pub out: Frames,
    /// The replica's clock, in milliseconds.
    pub now: u64,
    next_request: u64,
}

impl Lone {
    /// A fresh replica's machine (`configure` adds settings), ticked until
    /// it leads.
    pub fn new(configure: impl FnOnce(Machine) -> Machine) -> Lone {
        let replica = Replica::new(Config::new(0, vec![0], 1), DurableState::default(), 0);
        let machine = configure(Machine::new(replica, 5));
        let mut lone = Lone { machine, out: Frames::default(), now: 1_000, next_request: 1 };
        for _ in 0..200 {
            lone.machine.step(Event::Tick, &mut lone.out);
            lone.settle();
        }
        assert_eq!(lone.machine.replica().role(), chorus_paxos::Role::Leader, "a lone replica leads");
        lone
    }

    /// Carries out effects until there are none.
    pub fn settle(&mut self) {
        loop {
            let effects = self.machine.process(&mut self.out);
            let idle = effects.write.is_none() && effects.passwords.is_empty();
            if let Some(write) = effects.write {
                self.machine.step(Event::Persisted(write.id), &mut self.out);
            }
            for job in effects.passwords {
                let outcome = passwords::run(&job.work, CHEAP, [9; 16]);
                self.machine.password_done(job.id, outcome, self.now, &mut self.out);
            }
            if idle {
                return;
            }
        }
    }

    /// Hands `request` to the machine on `conn` without settling; returns
    /// its request id.
    pub fn submit(&mut self, conn: ConnId, request: Request) -> u64 {
        let request_id = self.next_request;
        self.next_request += 1;
        self.machine.request(conn, ClientFrame { request_id, request }, self.now, &mut self.out);
        request_id
    }

    /// Sends `request` on `conn`, settles, and returns its reply.
    pub fn ask(&mut self, conn: ConnId, request: Request) -> Result<Response, RequestError> {
        let request_id = self.submit(conn, request);
        self.settle();
        let frames = self.out.0.entry(conn).or_default();
        let at = frames
            .iter()
            .position(|f| matches!(f, ServerFrame::Reply { request_id: id, .. } if *id == request_id))
            .expect("the request was answered");
        match frames.remove(at) {
            ServerFrame::Reply { result, .. } => result,
            _ => unreachable!("matched a reply"),
        }
    }
}
