//! Property tests: replicas that apply the same proposals agree, with or
//! without a snapshot in the middle, and errors touch only the session.

use std::io::Write;

use proptest::prelude::*;

use super::*;
use crate::snapshot::Fnv1a;

/// Names drawn from a small pool so that commands collide often; the empty
/// name exercises validation.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("alice"),
        3 => Just("bob"),
        3 => Just("carol"),
        1 => Just(""),
    ]
    .prop_map(str::to_string)
}

/// Any command, weighted towards sends.
fn command() -> impl Strategy<Value = Command> {
    let text = prop_oneof![1 => Just(""), 5 => Just("hi"), 5 => Just("hello")];
    prop_oneof![
        1 => Just(Command::RegisterClient),
        2 => name().prop_map(|name| Command::Create { name, password_hash: super::HASH.to_string() }),
        1 => name().prop_map(|name| Command::Delete { name }),
        8 => (name(), name(), text.clone()).prop_map(|(from, to, text)| Command::Send {
            from,
            to,
            text: text.to_string(),
        }),
        2 => (name(), 0..40u64).prop_map(|(name, through)| Command::Ack { name, through }),
        2 => (name(), room()).prop_map(|(name, room)| Command::Join { name, room }),
        1 => (name(), room()).prop_map(|(name, room)| Command::Leave { name, room }),
        4 => (name(), room(), text.clone()).prop_map(|(from, room, text)| Command::Say {
            from,
            room,
            text: text.to_string(),
        }),
        1 => (name(), text).prop_map(|(from, text)| Command::Broadcast { from, text: text.to_string() }),
    ]
}

/// Room names from a small pool, with the built-in room and a bad name.
fn room() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just("#a"), 3 => Just("#b"), 1 => Just("#all"), 1 => Just("a")].prop_map(str::to_string)
}

/// How a client numbers its next proposal.
#[derive(Clone, Copy, Debug)]
enum SeqMove {
    /// A new command: last sequence number + 1.
    Next,
    /// A retry: the same sequence number again.
    Retry,
    /// A late duplicate: a number the client already used.
    Stale,
}

/// Proposals from three clients, numbered the way real clients number them
/// (mostly increasing, some retries, a few stale), so that commands execute.
fn proposals() -> impl Strategy<Value = Vec<Proposal>> {
    let seq_move = prop_oneof![8 => Just(SeqMove::Next), 2 => Just(SeqMove::Retry), 1 => Just(SeqMove::Stale)];
    // Some commands carry a read position (only posts apply it).
    let read_through = prop::option::weighted(0.3, 0..40u64);
    let step = (0..3u64, seq_move, any::<u64>(), command(), read_through);
    prop::collection::vec(step, 0..120).prop_map(|steps| {
        let mut last_seq = [0u64; 3];
        let numbered = steps.into_iter().map(|(client, seq_move, at_millis, command, read_through)| {
            let last = &mut last_seq[client as usize];
            let seq = match seq_move {
                SeqMove::Next => *last + 1,
                SeqMove::Retry => *last,
                SeqMove::Stale => last.saturating_sub(2),
            };
            *last = (*last).max(seq);
            Proposal { client, seq, at_millis, command, read_through }
        });
        // Clients 0 and 1 start registered; client 2 must register itself.
        let registrations = (0..2).map(|client| Proposal::new(client, 0, 0, Command::RegisterClient));
        registrations.chain(numbered).collect()
    })
}

/// Bounds small enough that eviction and fullness happen within a run.
const TIGHT: Bounds = Bounds {
    accounts_max: 2,
    mailbox_messages_max: 3,
    sessions_max: 2,
    rooms_max: 1,
    room_members_max: 2,
    rooms_per_account_max: 1,
    history_messages_max: 2,
    history_bytes_max: 12,
};

proptest! {
    #[test]
    fn replicas_agree_through_a_snapshot(
        proposals in proposals(),
        cut in any::<prop::sample::Index>(),
        tight in any::<bool>(),
    ) {
        let bounds = if tight { TIGHT } else { Bounds::LIMITS };
        let cut = cut.index(proposals.len() + 1);
        let mut first = ChatState::new();
        let mut second = ChatState::new();
        for (index, p) in proposals.iter().enumerate() {
            if index == cut {
                second = ChatState::from_snapshot(&second.to_snapshot()).unwrap();
            }
            let digest_before = first.digest();
            let one = first.apply_bounded(p, bounds);
            let two = second.apply_bounded(p, bounds);
            prop_assert_eq!(&one, &two);
            prop_assert_ne!(first.digest(), digest_before);
            prop_assert_eq!(first.digest(), second.digest());
        }
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(first.to_snapshot(), second.to_snapshot());
    }

    #[test]
    fn streamed_snapshots_round_trip(
        proposals in proposals(),
        tight in any::<bool>(),
    ) {
        let bounds = if tight { TIGHT } else { Bounds::LIMITS };
        let mut state = ChatState::new();
        for p in &proposals {
            state.apply_bounded(p, bounds);
        }
        let mut bytes = Vec::new();
        state.write_snapshot(&mut bytes).unwrap();
        prop_assert_eq!(&bytes, &state.to_snapshot());
        let mut hasher = Fnv1a::new();
        hasher.write_all(&bytes).unwrap();
        prop_assert_eq!(state.digest(), hasher.finish());
        prop_assert_eq!(ChatState::read_snapshot(&bytes[..]), Ok(state));
    }

    #[test]
    fn errors_change_nothing_but_the_session(
        proposals in proposals(),
    ) {
        let mut state = ChatState::new();
        for p in &proposals {
            // A read position a post carries applies even if the post fails.
            let mut acked = state.clone();
            acked.carried_ack(p);
            let before = chat_bytes(&acked);
            let result = state.apply_bounded(p, TIGHT);
            if result.reply.is_err() {
                prop_assert_eq!(chat_bytes(&state), before);
                prop_assert_eq!(&result.event, &None);
            }
            let restored = ChatState::from_snapshot(&state.to_snapshot());
            prop_assert!(restored.is_ok(), "{:?}", restored);
        }
    }
}
