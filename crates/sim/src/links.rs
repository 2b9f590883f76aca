//! Simulated client connections: ordered and lossless while open (like
//! TCP), closed by a replica crash, a client crash, a cut between the two,
//! or a replica dropping a client too slow to keep up.

use chorus_limits as limits;
use chorus_proto::{ClientFrame, ServerFrame};
use chorus_server::machine::{Outbox, PushError};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use chorus_server::machine::ConnId;

/// One connection.
#[derive(Debug)]
struct Link {
    client: usize,
    replica: usize,
    open: bool,
    to_replica: VecDeque<(u64, ClientFrame)>,
    to_client: VecDeque<(u64, ServerFrame)>,
}

/// Every client connection, and what replicas are reachable.
#[derive(Debug, Default)]
pub struct Links {
    links: BTreeMap<ConnId, Link>,
    next: ConnId,
    pub now: u64,
    /// Replicas that are running.
    pub up: Vec<bool>,
    /// (client, replica) pairs that cannot reach each other.
    pub cuts: BTreeSet<(usize, usize)>,
    /// Connections opened or closed since the world last looked.
    pub opened: Vec<(usize, ConnId)>,
    pub closed: Vec<(usize, ConnId)>,
}

impl Links {
    /// No connections yet; `replicas` replicas, all up.
    pub fn new(replicas: usize) -> Self {
        Links { up: vec![true; replicas], ..Links::default() }
    }

    /// Opens a connection, or `None` when the replica is down or cut off.
    pub fn connect(&mut self, client: usize, replica: usize) -> Option<ConnId> {
        if !self.up[replica] || self.cuts.contains(&(client, replica)) {
            return None;
        }
        self.next += 1;
        let link = Link { client, replica, open: true, to_replica: VecDeque::new(), to_client: VecDeque::new() };
        self.links.insert(self.next, link);
        self.opened.push((replica, self.next));
        Some(self.next)
    }

    pub fn is_open(&self, conn: ConnId) -> bool {
        self.links.get(&conn).is_some_and(|l| l.open)
    }

    pub fn close(&mut self, conn: ConnId) {
        if let Some(link) = self.links.get_mut(&conn) {
            if link.open {
                link.open = false;
                self.closed.push((link.replica, conn));
            }
        }
    }

    /// Closes every connection matching `pred(client, replica)`.
    pub fn close_where(&mut self, pred: impl Fn(usize, usize) -> bool) {
        let doomed: Vec<ConnId> =
            self.links.iter().filter(|(_, l)| l.open && pred(l.client, l.replica)).map(|(c, _)| *c).collect();
        for conn in doomed {
            self.close(conn);
        }
    }

    pub fn client_send(&mut self, conn: ConnId, frame: ClientFrame) {
        let now = self.now;
        if let Some(link) = self.links.get_mut(&conn).filter(|l| l.open) {
            link.to_replica.push_back((now + 1, frame));
        }
    }

    /// Frames due at replicas: (replica, conn, frame).
    pub fn due_at_replicas(&mut self) -> Vec<(usize, ConnId, ClientFrame)> {
        let now = self.now;
        self.drain_due(|link| (link.replica, &mut link.to_replica), now)
    }

    /// Frames due at clients: (client, conn, frame).
    pub fn due_at_clients(&mut self) -> Vec<(usize, ConnId, ServerFrame)> {
        let now = self.now;
        self.drain_due(|link| (link.client, &mut link.to_client), now)
    }

    /// Pops every frame due by `now` from one direction of every open link;
    /// `side` picks the receiving end and its queue.
    fn drain_due<F>(
        &mut self,
        side: impl Fn(&mut Link) -> (usize, &mut VecDeque<(u64, F)>),
        now: u64,
    ) -> Vec<(usize, ConnId, F)> {
        let mut due = Vec::new();
        for (conn, link) in self.links.iter_mut().filter(|(_, l)| l.open) {
            let (receiver, queue) = side(link);
            while queue.front().is_some_and(|(at, _)| *at <= now) {
                let (_, frame) = queue.pop_front().expect("checked");
                due.push((receiver, *conn, frame));
            }
        }
        due
    }

    /// Forgets closed connections with nothing left to deliver.
    pub fn sweep(&mut self) {
        self.links.retain(|_, l| l.open);
    }
}

impl Outbox for Links {
    fn room(&self, conn: ConnId) -> usize {
        match self.links.get(&conn) {
            Some(link) if link.open => limits::CLIENT_OUTBOUND_FRAMES_MAX.saturating_sub(link.to_client.len()),
            _ => 0,
        }
    }

    fn push(&mut self, conn: ConnId, frame: ServerFrame) -> Result<(), PushError> {
        let now = self.now;
        let link = self.links.get_mut(&conn).filter(|l| l.open).ok_or(PushError::Closed)?;
        if link.to_client.len() >= limits::CLIENT_OUTBOUND_FRAMES_MAX {
            return Err(PushError::Full);
        }
        link.to_client.push_back((now + 1, frame));
        Ok(())
    }

    fn kick(&mut self, conn: ConnId) {
        self.close(conn);
    }
}
