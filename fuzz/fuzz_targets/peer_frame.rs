//! The replica's reader of peer links: a hello, then peer frames (consensus
//! messages and snapshot transfers).
#![no_main]

use chorus_proto::{Hello, PeerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chorus_fuzz::read_stream::<Hello, PeerFrame>(data, chorus_limits::PEER_FRAME_BYTES_MAX);
});
