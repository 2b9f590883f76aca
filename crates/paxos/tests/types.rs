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
        Value::batch(vec![]).size_bytes(),
        Value::batch(vec![b"abc".to_vec(), vec![]]).size_bytes(),
    ];
    assert_eq!(sizes, [VALUE_OVERHEAD_BYTES, VALUE_OVERHEAD_BYTES, 3 + 2 * VALUE_OVERHEAD_BYTES]);
}

/// `Value` as it was declared before its batch was shared: logs and peers
/// written then must read the same now.
#[derive(serde::Serialize)]
enum PlainValue {
    Noop,
    Batch(Vec<Vec<u8>>),
}

#[test]
fn a_shared_batch_encodes_exactly_as_a_vec_of_commands() {
    let commands = vec![b"first".to_vec(), vec![], vec![7; 300]];
    let shared = postcard::to_allocvec(&Value::batch(commands.clone())).unwrap();
    assert_eq!(shared, postcard::to_allocvec(&PlainValue::Batch(commands)).unwrap());
    let noop = postcard::to_allocvec(&Value::Noop).unwrap();
    assert_eq!(noop, postcard::to_allocvec(&PlainValue::Noop).unwrap());
    assert_eq!(
        postcard::from_bytes::<Value>(&shared).unwrap(),
        Value::batch(vec![b"first".to_vec(), vec![], vec![7; 300]])
    );
}
