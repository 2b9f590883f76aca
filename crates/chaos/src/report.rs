//! The [`Report`] of one run: what was attempted and acknowledged, the
//! faults injected, the unavailability clients saw after each leader
//! fault, convergence, and every violation; printed for a human and as
//! JSON.

use crate::check::Violation;
use crate::faults::{Injected, Kind};
use crate::history::{Micros, PostRecord, SendOutcome, SendRecord};
use crate::run::Options;
use chorus_lincheck::{AccountResult, Operation};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Attempted operations by outcome.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub attempted: u64,
    /// Acknowledged (for a send: durable, with an id) or answered.
    pub ok: u64,
    /// Refused by the service (took no effect), or a well-defined refusal
    /// such as "name taken".
    pub refused: u64,
    /// Timed out: may or may not have taken effect.
    pub unknown: u64,
}

impl Counts {
    pub fn of_sends(sends: &[SendRecord]) -> Counts {
        Counts::of_outcomes(sends.iter().map(|send| send.outcome))
    }

    pub fn of_posts(posts: &[PostRecord]) -> Counts {
        Counts::of_outcomes(posts.iter().map(|post| post.outcome))
    }

    fn of_outcomes(outcomes: impl Iterator<Item = SendOutcome>) -> Counts {
        let mut counts = Counts::default();
        for outcome in outcomes {
            counts.attempted += 1;
            match outcome {
                SendOutcome::Acked(_) => counts.ok += 1,
                SendOutcome::Refused => counts.refused += 1,
                SendOutcome::Unknown => counts.unknown += 1,
            }
        }
        counts
    }

    pub fn of_account_ops(ops: &[Operation]) -> Counts {
        let mut counts = Counts { attempted: ops.len() as u64, ..Counts::default() };
        for op in ops {
            match &op.completed {
                Some((_, AccountResult::Ok | AccountResult::Names(_))) => counts.ok += 1,
                Some(_) => counts.refused += 1,
                None => counts.unknown += 1,
            }
        }
        counts
    }
}

/// One injected fault.
#[derive(Clone, Debug, Serialize)]
pub struct FaultEvent {
    pub kind: &'static str,
    /// Microseconds since the run started.
    pub at_us: Micros,
    pub hold_ms: u64,
    pub what: String,
    /// A fault aimed at the leader found none and hit another replica.
    pub no_leader: bool,
}

impl FaultEvent {
    pub fn new(injected: &Injected, at_us: Micros) -> FaultEvent {
        FaultEvent {
            kind: injected.fault.kind.name(),
            at_us,
            hold_ms: injected.fault.hold.as_millis() as u64,
            what: injected.summary.clone(),
            no_leader: injected.no_leader,
        }
    }
}

/// A violation, for JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub detail: String,
}

/// Everything one run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub replicas: usize,
    pub fault_seconds: u64,
    pub repro: String,
    pub dir: String,
    pub sends: Counts,
    /// Posts to the room every sender and recipient is in.
    pub posts: Counts,
    pub delivered: u64,
    pub reconnects: u64,
    pub account_ops: Counts,
    pub faults: Vec<FaultEvent>,
    /// Disk-full faults whose replica stopped (a write failed).
    pub disk_full_stopped: u64,
    /// Per leader kill: last acknowledgement before it to the first after it.
    pub leader_kill_gaps_ms: Vec<u64>,
    /// The same for leader pauses (SIGSTOP).
    pub leader_pause_gaps_ms: Vec<u64>,
    /// From healing to every acknowledged message handed over.
    pub drained_after_ms: Option<u64>,
    /// From healing to equal states on every replica.
    pub converged_after_ms: Option<u64>,
    pub linearizability_inconclusive: Option<String>,
    pub violations: Vec<Finding>,
}

impl Report {
    pub fn new(options: &Options) -> Report {
        Report {
            seed: options.seed,
            replicas: options.replicas,
            fault_seconds: options.seconds,
            repro: format!(
                "chorus chaos --replicas {} --seconds {} --seed {}",
                options.replicas, options.seconds, options.seed
            ),
            dir: String::new(),
            sends: Counts::default(),
            posts: Counts::default(),
            delivered: 0,
            reconnects: 0,
            account_ops: Counts::default(),
            faults: Vec::new(),
            disk_full_stopped: 0,
            leader_kill_gaps_ms: Vec::new(),
            leader_pause_gaps_ms: Vec::new(),
            drained_after_ms: None,
            converged_after_ms: None,
            linearizability_inconclusive: None,
            violations: Vec::new(),
        }
    }

    pub fn add_violation(&mut self, check: &'static str, detail: String) {
        self.violations.push(Finding { check, detail });
    }

    /// Violations from a checker.
    pub fn extend_violations(&mut self, violations: Vec<Violation>) {
        self.violations.extend(violations.into_iter().map(|v| Finding { check: v.check, detail: v.detail }));
    }

    /// Fills the unavailability gaps from the sorted acknowledgement times.
    pub fn set_gaps(&mut self, ack_times: &[Micros]) {
        for fault in self.faults.iter().filter(|f| !f.no_leader) {
            let Some(gap) = gap_around(ack_times, fault.at_us) else { continue };
            if fault.kind == Kind::KillLeader.name() {
                self.leader_kill_gaps_ms.push(gap / 1_000);
            } else if fault.kind == Kind::PauseLeader.name() {
                self.leader_pause_gaps_ms.push(gap / 1_000);
            }
        }
    }

    /// The fault counts by kind.
    pub fn faults_by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for fault in &self.faults {
            *counts.entry(fault.kind).or_default() += 1;
        }
        counts
    }

    /// The report for a human.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chaos run: {} replicas, {} s of faults, seed {}",
            self.replicas, self.fault_seconds, self.seed
        );
        let _ = writeln!(
            out,
            "  sends        {}, delivered {}, subscriber reconnects {}",
            counts(&self.sends),
            self.delivered,
            self.reconnects
        );
        let _ = writeln!(out, "  room posts   {}", counts(&self.posts));
        let _ = writeln!(out, "  account ops  {}", counts(&self.account_ops));
        let kinds: Vec<String> = self.faults_by_kind().iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  faults       {} ({})", self.faults.len(), kinds.join(", "));
        let _ = writeln!(out, "  disk-full faults that stopped their replica: {}", self.disk_full_stopped);
        let _ = writeln!(out, "  unavailability after leader kill  {}", gaps(&self.leader_kill_gaps_ms));
        let _ = writeln!(out, "  unavailability after leader pause {}", gaps(&self.leader_pause_gaps_ms));
        let _ =
            writeln!(out, "  drained {}, converged {}", after(self.drained_after_ms), after(self.converged_after_ms));
        if let Some(reason) = &self.linearizability_inconclusive {
            let _ = writeln!(out, "  linearizability: inconclusive ({reason})");
        }
        let _ = writeln!(out, "  violations   {}", self.violations.len());
        for finding in &self.violations {
            let _ = writeln!(out, "    [{}] {}", finding.check, finding.detail);
        }
        let _ = writeln!(out, "  directory    {}", self.dir);
        let _ = writeln!(out, "  reproduce    {}", self.repro);
        out
    }
}

/// Last acknowledgement at or before `at` to the first one after it.
fn gap_around(ack_times: &[Micros], at: Micros) -> Option<Micros> {
    let after = ack_times.partition_point(|&t| t <= at);
    let before = ack_times[..after].last()?;
    let first_after = ack_times.get(after)?;
    Some(first_after - before)
}

fn counts(c: &Counts) -> String {
    format!("{} attempted: {} ok, {} refused, {} unknown", c.attempted, c.ok, c.refused, c.unknown)
}

fn gaps(gaps_ms: &[u64]) -> String {
    if gaps_ms.is_empty() {
        return "(none measured)".into();
    }
    let mut sorted = gaps_ms.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    format!("median {median} ms, max {max} ms over {} ({sorted:?})", sorted.len())
}

fn after(ms: Option<u64>) -> String {
    ms.map_or_else(|| "NOT WITHIN THE BOUND".to_string(), |ms| format!("{ms} ms after healing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_spans_the_fault() {
        let acks = [10, 20, 30, 500, 510];
        assert_eq!(gap_around(&acks, 35), Some(470));
        assert_eq!(gap_around(&acks, 30), Some(470));
        assert_eq!(gap_around(&acks, 5), None);
        assert_eq!(gap_around(&acks, 600), None);
    }
}
