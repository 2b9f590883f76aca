//! `chorus-chaos`: a real Chorus cluster under concurrent load and faults,
//! checked afterwards from what its clients saw.
//!
//! [`run::run`] starts real `chorus server` processes ([`cluster::ChaosCluster`])
//! whose every replica link and client port goes through a fault-injecting
//! TCP [`proxy::Proxy`], runs the [`workload::Workload`] (senders,
//! subscribers with live delivery, account workers) that records a
//! [`history::History`], injects the seeded [`faults::Plan`] (kill -9 of the
//! leader, of any replica and of a majority; SIGSTOP; partitions, one-way
//! cuts, delays and resets through the proxies; clients cut from a replica;
//! a full disk; a lost disk), heals, and runs the [`check`]ers. The result
//! is a [`report::Report`].

pub mod check;
pub mod cluster;
pub mod faults;
pub mod history;
pub mod ports;
pub mod proxy;
pub mod report;
pub mod run;
pub mod workload;

pub use report::Report;
pub use run::{run, Options};
pub use workload::Shape;
