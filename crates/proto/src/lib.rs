//! Chorus on the wire.
//!
//! Every connection carries length-prefixed frames: a 4-byte big-endian
//! payload length, then a postcard-encoded payload. The length is checked
//! against the connection's maximum ([`CLIENT_FRAME_BYTES_MAX`] or
//! [`PEER_FRAME_BYTES_MAX`]) before any buffer is allocated.
//!
//! The first frame on a connection is a [`Hello`] from the side that
//! connected: magic, protocol version and who it is. A client then sends
//! [`ClientFrame`]s (requests tagged with a request id) and receives
//! [`ServerFrame`]s (replies with the same id, and pushed deliveries). A
//! replica sends [`PeerFrame`]s carrying [`chorus_paxos::Envelope`]s.
//!
//! `docs/PROTOCOL.md` describes the same formats for other implementers.
//!
//! [`CLIENT_FRAME_BYTES_MAX`]: chorus_limits::CLIENT_FRAME_BYTES_MAX
//! [`PEER_FRAME_BYTES_MAX`]: chorus_limits::PEER_FRAME_BYTES_MAX

mod cluster;
mod frame;
mod messages;

pub use cluster::{ClusterFile, ClusterFileError, ClusterTls, ReplicaAddress};
pub use frame::{decode_payload, encode_frame, encode_frame_into, read_frame, write_frame, FrameError};
pub use messages::*;
