//! Checkers over a recorded [`crate::history::History`]. Each finding is a
//! [`Violation`] naming its checker.
//!
//! - [`deliveries`]: every acknowledged send was handed to its recipient
//!   exactly once, with the id its sender was told; nothing was handed over
//!   that was not sent (or that was refused); each recipient saw ids in
//!   strictly increasing order.
//! - [`real_time_order`]: message ids follow real time: a send acknowledged
//!   before another one started has the smaller id (ids are given in log
//!   order, so this is linearizability of sends).
//! - [`room_order`]: every member of the room saw the same posts, under
//!   the same ids (so in the same order, the log's: each member's stream
//!   strictly increases), with no gaps: an acknowledged post reached every
//!   member, a post that reached one member reached all, nothing reached
//!   a member twice or that was not posted (or was refused); a gap notice
//!   excuses what it covers.
//! - [`accounts`]: the account operations (create, delete, send between
//!   churned accounts, list) are linearizable (`chorus-lincheck`).

use crate::history::{
    parse_message_text, parse_post_text, recipient_name, sender_name, Delivered, PostRecord, SendOutcome, SendRecord,
};
use chorus_chat::MessageId;
use chorus_lincheck::{CheckError, Operation};
use std::collections::HashMap;

/// Violations shown per checker; the count says how many there were.
const SHOWN_PER_CHECK_MAX: usize = 10;

/// A broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub detail: String,
}

impl Violation {
    fn new(check: &'static str, detail: impl Into<String>) -> Violation {
        Violation { check, detail: detail.into() }
    }
}

/// Collects violations of one checker, keeping the first few.
#[derive(Debug)]
struct Findings {
    check: &'static str,
    shown: Vec<Violation>,
    count: usize,
}

impl Findings {
    fn new(check: &'static str) -> Findings {
        Findings { check, shown: Vec::new(), count: 0 }
    }

    fn add(&mut self, detail: String) {
        self.count += 1;
        if self.shown.len() < SHOWN_PER_CHECK_MAX {
            self.shown.push(Violation::new(self.check, detail));
        }
    }

    fn finish(mut self) -> Vec<Violation> {
        if self.count > self.shown.len() {
            let more = self.count - self.shown.len();
            self.shown.push(Violation::new(self.check, format!("... and {more} more")));
        }
        self.shown
    }
}

/// Exactly-once, in-order, no-phantom delivery of the send workload.
/// `delivered` is in the order each recipient's client handed messages over.
pub fn deliveries(sends: &[SendRecord], delivered: &[Delivered]) -> Vec<Violation> {
    let mut findings = Findings::new("delivery");
    let by_key: HashMap<(u16, u32), &SendRecord> = sends.iter().map(|s| ((s.sender, s.seq), s)).collect();
    let mut seen: HashMap<(u16, u32), MessageId> = HashMap::new();
    let mut last_id: HashMap<u16, MessageId> = HashMap::new();
    for message in delivered {
        check_order(message, &mut last_id, &mut findings);
        if message.room.is_some() {
            continue; // checked by room_order
        }
        let Some(key) = parse_message_text(&message.text) else {
            findings
                .add(format!("{} was handed a message nobody sent: {message:?}", recipient_name(message.recipient)));
            continue;
        };
        if let Some(first) = seen.insert(key, message.id) {
            findings.add(format!("{:?} was handed over twice (ids {first} and {})", message.text, message.id));
            continue;
        }
        match by_key.get(&key) {
            Some(send) => check_matches_send(message, send, &mut findings),
            None => findings.add(format!("{:?} was handed over but never sent", message.text)),
        }
    }
    for send in sends {
        if matches!(send.outcome, SendOutcome::Acked(_)) && !seen.contains_key(&(send.sender, send.seq)) {
            findings.add(format!("acknowledged send never delivered: {send:?}"));
        }
    }
    findings.finish()
}

/// The room posts: the same ones, under the same ids, to every one of the
/// `recipients` members, no repeats, nothing not posted, no gaps.
pub fn room_order(posts: &[PostRecord], delivered: &[Delivered], recipients: u16) -> Vec<Violation> {
    let mut findings = Findings::new("rooms");
    let by_key: HashMap<(u16, u32), &PostRecord> = posts.iter().map(|p| ((p.sender, p.seq), p)).collect();
    let mut ids: HashMap<(u16, u32), MessageId> = HashMap::new();
    let mut seen: std::collections::HashSet<(u16, (u16, u32))> = std::collections::HashSet::new();
    let mut noticed: HashMap<u16, MessageId> = HashMap::new();
    for message in delivered.iter().filter(|m| m.room.is_some()) {
        let member = recipient_name(message.recipient);
        if message.from.is_empty() {
            let notice = noticed.entry(message.recipient).or_default();
            *notice = (*notice).max(message.id);
            continue;
        }
        let Some(key) = parse_post_text(&message.text) else {
            findings.add(format!("{member} was handed a room message nobody posted: {message:?}"));
            continue;
        };
        if !seen.insert((message.recipient, key)) {
            findings.add(format!("{member} was handed {:?} twice", message.text));
        }
        if *ids.entry(key).or_insert(message.id) != message.id {
            findings.add(format!(
                "{:?} reached members under different ids ({} and {})",
                message.text, ids[&key], message.id
            ));
        }
        match by_key.get(&key) {
            Some(post) => check_matches_post(message, post, &mut findings),
            None => findings.add(format!("{:?} was handed over but never posted", message.text)),
        }
    }
    let covered = |r: u16, key: (u16, u32), id: MessageId| {
        seen.contains(&(r, key)) || noticed.get(&r).is_some_and(|notice| id <= *notice)
    };
    for post in posts {
        let key = (post.sender, post.seq);
        let id = match (post.outcome, ids.get(&key)) {
            (SendOutcome::Acked(id), _) => id,
            (_, Some(id)) => *id,
            _ => continue, // not acknowledged and seen by no one
        };
        if let Some(missing) = (0..recipients).find(|r| !covered(*r, key, id)) {
            findings.add(format!("post {post:?} (id {id}) never reached member {}: a gap", recipient_name(missing)));
        }
    }
    findings.finish()
}

/// A delivered post must come from its poster under the id it was
/// acknowledged with; a refused post is never delivered.
fn check_matches_post(message: &Delivered, post: &PostRecord, findings: &mut Findings) {
    if message.from != sender_name(post.sender) {
        findings.add(format!("{message:?} does not match its post {post:?}"));
    }
    match post.outcome {
        SendOutcome::Acked(id) if id != message.id => {
            findings.add(format!("{:?} was acknowledged as id {id} but delivered as id {}", message.text, message.id));
        }
        SendOutcome::Refused => findings.add(format!("refused post was delivered: {message:?}")),
        _ => {}
    }
}

/// Ids a recipient is handed must strictly increase.
fn check_order(message: &Delivered, last_id: &mut HashMap<u16, MessageId>, findings: &mut Findings) {
    let last = last_id.entry(message.recipient).or_insert(0);
    if message.id <= *last {
        findings.add(format!(
            "{} was handed id {} after id {last}: out of order or repeated",
            recipient_name(message.recipient),
            message.id
        ));
    }
    *last = (*last).max(message.id);
}

/// A delivered message must be the send it names: same sender, recipient and,
/// when acknowledged, the same id; a refused send is never delivered.
fn check_matches_send(message: &Delivered, send: &SendRecord, findings: &mut Findings) {
    if message.recipient != send.recipient || message.from != sender_name(send.sender) {
        findings.add(format!("{message:?} does not match its send {send:?}"));
    }
    match send.outcome {
        SendOutcome::Acked(id) if id != message.id => {
            findings.add(format!("{:?} was acknowledged as id {id} but delivered as id {}", message.text, message.id));
        }
        SendOutcome::Refused => findings.add(format!("refused send was delivered: {message:?}")),
        _ => {}
    }
}

/// A send acknowledged before another started must have the smaller id.
pub fn real_time_order(sends: &[SendRecord]) -> Vec<Violation> {
    let mut findings = Findings::new("real-time order");
    let mut acked: Vec<(u64, u64, MessageId, &SendRecord)> = sends
        .iter()
        .filter_map(|s| match (s.outcome, s.end) {
            (SendOutcome::Acked(id), Some(end)) => Some((s.start, end, id, s)),
            _ => None,
        })
        .collect();
    let mut by_end: Vec<(u64, MessageId, &SendRecord)> = acked.iter().map(|&(_, end, id, s)| (end, id, s)).collect();
    by_end.sort_unstable_by_key(|&(end, id, _)| (end, id));
    acked.sort_unstable_by_key(|&(start, ..)| start);
    let mut finished = 0;
    let mut highest: Option<(MessageId, &SendRecord)> = None;
    for &(start, _, id, send) in &acked {
        while finished < by_end.len() && by_end[finished].0 < start {
            let (_, earlier_id, earlier) = by_end[finished];
            if highest.is_none_or(|(h, _)| earlier_id > h) {
                highest = Some((earlier_id, earlier));
            }
            finished += 1;
        }
        if let Some((earlier_id, earlier)) = highest.filter(|&(h, _)| h >= id) {
            findings.add(format!(
                "{send:?} started after {earlier:?} was acknowledged, but got a smaller id ({id} < {earlier_id})"
            ));
        }
    }
    findings.finish()
}

/// Linearizability of the account operations. A search that gives up is
/// reported separately: it is not evidence of a violation.
pub fn accounts(history: &[Operation]) -> Result<Vec<Violation>, String> {
    match chorus_lincheck::check(history) {
        Ok(()) => Ok(Vec::new()),
        Err(CheckError::Violation(violation)) => {
            Ok(vec![Violation::new("linearizable accounts", violation.explanation)])
        }
        Err(CheckError::TooHard { steps }) => Err(format!("the linearizability search gave up after {steps} steps")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::message_text;

    fn acked(sender: u16, seq: u32, recipient: u16, id: MessageId, start: u64, end: u64) -> SendRecord {
        SendRecord { sender, seq, recipient, start, end: Some(end), outcome: SendOutcome::Acked(id) }
    }

    fn delivered(send: &SendRecord, id: MessageId) -> Delivered {
        Delivered {
            recipient: send.recipient,
            id,
            from: sender_name(send.sender),
            room: None,
            text: message_text(send.sender, send.seq),
            at: 0,
        }
    }

    fn checks(violations: &[Violation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.check).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let a = acked(0, 0, 1, 1, 0, 10);
        let b = acked(0, 1, 1, 2, 11, 20);
        let unknown =
            SendRecord { sender: 1, seq: 0, recipient: 1, start: 5, end: None, outcome: SendOutcome::Unknown };
        let sends = [a, b, unknown];
        assert!(deliveries(&sends, &[delivered(&a, 1), delivered(&b, 2)]).is_empty());
        assert!(deliveries(&sends, &[delivered(&a, 1), delivered(&unknown, 2), delivered(&b, 3)]).len() == 1);
        assert!(real_time_order(&sends).is_empty());
    }

    #[test]
    fn a_lost_acknowledged_send_is_caught() {
        let a = acked(0, 0, 1, 1, 0, 10);
        let found = deliveries(&[a], &[]);
        assert_eq!(checks(&found), ["delivery"]);
        assert!(found[0].detail.contains("never delivered"));
    }

    #[test]
    fn a_repeat_is_caught_even_under_a_new_id() {
        let a = acked(0, 0, 1, 1, 0, 10);
        let found = deliveries(&[a], &[delivered(&a, 1), delivered(&a, 2)]);
        assert!(found.iter().any(|v| v.detail.contains("twice")), "{found:?}");
    }

    #[test]
    fn reordering_a_phantom_a_refused_send_and_a_wrong_id_are_caught() {
        let a = acked(0, 0, 1, 5, 0, 10);
        let b = acked(0, 1, 1, 6, 11, 20);
        let out_of_order = deliveries(&[a, b], &[delivered(&b, 6), delivered(&a, 5)]);
        assert!(out_of_order.iter().any(|v| v.detail.contains("out of order")), "{out_of_order:?}");
        let mut phantom = delivered(&a, 5);
        phantom.text = "hello".into();
        assert!(deliveries(&[], &[phantom]).iter().any(|v| v.detail.contains("nobody sent")));
        let refused = SendRecord { outcome: SendOutcome::Refused, end: Some(3), ..a };
        assert!(deliveries(&[refused], &[delivered(&a, 5)]).iter().any(|v| v.detail.contains("refused")));
        assert!(deliveries(&[a], &[delivered(&a, 9)]).iter().any(|v| v.detail.contains("delivered as id 9")));
    }

    #[test]
    fn a_message_handed_to_the_wrong_recipient_is_caught() {
        let a = acked(0, 0, 1, 1, 0, 10);
        let mut wrong = delivered(&a, 1);
        wrong.recipient = 2;
        assert!(deliveries(&[a], &[wrong]).iter().any(|v| v.detail.contains("does not match")));
    }

    #[test]
    fn ids_against_real_time_are_caught_and_overlaps_are_not() {
        let first = acked(0, 0, 1, 7, 0, 10);
        let later = acked(1, 0, 1, 3, 11, 20);
        assert_eq!(checks(&real_time_order(&[first, later])), ["real-time order"]);
        let overlapping = acked(1, 0, 1, 3, 9, 20);
        assert!(real_time_order(&[first, overlapping]).is_empty());
    }

    #[test]
    fn findings_are_capped_with_a_count() {
        let sends: Vec<SendRecord> = (0..25).map(|i| acked(0, i, 1, u64::from(i) + 1, 0, 1)).collect();
        let found = deliveries(&sends, &[]);
        assert_eq!(found.len(), SHOWN_PER_CHECK_MAX + 1);
        assert!(found.last().unwrap().detail.contains("15 more"));
    }
    fn posted(sender: u16, seq: u32, id: MessageId) -> PostRecord {
        PostRecord { sender, seq, start: 0, end: Some(1), outcome: SendOutcome::Acked(id) }
    }

    fn in_room(post: &PostRecord, recipient: u16, id: MessageId) -> Delivered {
        Delivered {
            recipient,
            id,
            from: sender_name(post.sender),
            room: Some(crate::history::ROOM.into()),
            text: crate::history::post_text(post.sender, post.seq),
            at: 0,
        }
    }

    #[test]
    fn room_gaps_repeats_and_split_ids_are_caught() {
        let (a, b) = (posted(0, 0, 4), posted(1, 0, 7));
        let both = [in_room(&a, 0, 4), in_room(&b, 0, 7), in_room(&a, 1, 4), in_room(&b, 1, 7)];
        assert!(room_order(&[a, b], &both, 2).is_empty());
        assert!(deliveries(&[], &both).is_empty(), "room messages are not direct ones");
        let gap = room_order(&[a, b], &both[..3], 2);
        assert!(gap.iter().any(|v| v.detail.contains("never reached member r1")), "{gap:?}");
        let twice = [&both[..], &[in_room(&a, 0, 4)]].concat();
        assert!(room_order(&[a, b], &twice, 2).iter().any(|v| v.detail.contains("twice")));
        let split = [in_room(&a, 0, 4), in_room(&a, 1, 5)];
        assert!(room_order(&[a], &split, 2).iter().any(|v| v.detail.contains("different ids")));
        let notice = Delivered { from: String::new(), text: "dropped".into(), ..in_room(&b, 1, 7) };
        assert!(room_order(&[a, b], &[in_room(&a, 0, 4), in_room(&b, 0, 7), notice], 2).is_empty());
    }
}
