//! The protocol vocabulary: how ballots print and how values are sized
//! against the byte limits.

use chorus_limits::VALUE_OVERHEAD_BYTES;
use chorus_paxos::{Ballot, Value};

#[test]
fn ballot_displays_as_round_dot_replica() {
    assert_eq!(Ballot::new(12, 3).to_string(), "12.3");
}

#[test]
fn value_size_counts_each_command_plus_its_overhead_and_never_less_than_one_overhead() {
    let sizes = [
        Value::Noop.size_bytes(),
        Value::Batch(vec![]).size_bytes(),
        Value::Batch(vec![b"abc".to_vec(), vec![]]).size_bytes(),
    ];
    assert_eq!(sizes, [VALUE_OVERHEAD_BYTES, VALUE_OVERHEAD_BYTES, 3 + 2 * VALUE_OVERHEAD_BYTES]);
}
