//! [`ClientError`]: what a call can fail with, as the application sees it.

use chorus_chat::ChatError;
use chorus_proto::RequestError;

/// Why a [`crate::Client`] call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The chat service refused the request (no such account, name taken...).
    /// Nothing changed.
    #[error("{0}")]
    Chat(#[from] ChatError),
    /// No replica answered within the call's deadline. For a command the
    /// outcome is unknown (the message says so): it may or may not have
    /// taken effect.
    #[error("the cluster did not answer in time: {0}")]
    Unavailable(String),
    /// The cluster had forgotten this client's session (evicted). A new
    /// session was opened; the command's outcome is unknown.
    #[error(
        "the cluster had forgotten this client's session; a new session was opened, \
         and the outcome of the command is unknown (it may or may not have taken effect)"
    )]
    SessionExpired,
    /// Wrong name or password, not signed in, signed in as another
    /// account, or a session that expired. Nothing changed.
    #[error("not allowed: {0}")]
    Unauthorized(String),
    /// Too many failed sign-ins for this account or from this address.
    #[error("too many failed sign-ins; try again in {retry_after_millis} ms")]
    Throttled {
        /// How long to wait before trying again.
        retry_after_millis: u64,
    },
    /// A replica refused the request as malformed, or it could not be encoded.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The replica spoke a different protocol version or answered nonsense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was given no replica addresses.
    #[error("the cluster has no replicas")]
    NoReplicas,
    /// A replica id that is not in the client's list.
    #[error("replica {0} is not in the cluster file")]
    UnknownReplica(chorus_paxos::ReplicaId),
    /// The cluster file's TLS settings cannot be used.
    #[error("cannot use the cluster file's TLS settings: {0}")]
    Tls(String),
}

impl ClientError {
    /// The error for a final refusal from a replica (not a redirect or a
    /// transient condition, which the call loop handles itself).
    pub(crate) fn from_refusal(error: RequestError) -> ClientError {
        match error {
            RequestError::Chat(chat) => ClientError::Chat(chat),
            RequestError::BadRequest(reason) => ClientError::BadRequest(reason),
            RequestError::Unauthorized(reason) => ClientError::Unauthorized(reason),
            RequestError::Throttled { retry_after_millis } => ClientError::Throttled { retry_after_millis },
            other => ClientError::Protocol(other.to_string()),
        }
    }
}
