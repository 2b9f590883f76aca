//! Sans-IO Multi-Paxos (work in progress: types only).
mod types;
pub use types::*;
