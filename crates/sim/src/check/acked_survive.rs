//! Every acknowledged operation survives: a command a client got an answer
//! for is in the chosen log, and its first application gave that answer.

use super::exactly_once::ExactlyOnce;
use super::Violation;
use crate::client::{Finished, OpEnd};
use chorus_proto::{RequestError, Response};

pub fn check(finished: &[Finished], log: &ExactlyOnce) -> Result<(), Violation> {
    for f in finished.iter().filter(|f| f.seq > 0) {
        let OpEnd::Replied(at, result) = &f.end else { continue };
        let answered = match result {
            Ok(Response::Outcome(outcome)) => Ok(outcome.clone()),
            Err(RequestError::Chat(error)) => Err(error.clone()),
            _ => continue, // validation refusals never reach the log
        };
        let is_validation = matches!(
            &answered,
            Err(chorus_chat::ChatError::NameInvalid { .. }
                | chorus_chat::ChatError::TextEmpty
                | chorus_chat::ChatError::TextTooLong { .. })
        );
        if is_validation {
            continue;
        }
        match log.reply_of(f.client_id, f.seq) {
            Some(applied) if *applied == answered => {}
            Some(applied) => {
                return Err(Violation::new(
                    "acked-survive",
                    format!(
                    "client {} seq {} was told {answered:?} at t={at} but the log's first application gave {applied:?}",
                    f.client, f.seq
                ),
                ))
            }
            None => {
                return Err(Violation::new(
                    "acked-survive",
                    format!(
                        "client {} seq {} ({:?}) was acknowledged at t={at} but is not in the chosen log",
                        f.client, f.seq, f.kind
                    ),
                ))
            }
        }
    }
    Ok(())
}
