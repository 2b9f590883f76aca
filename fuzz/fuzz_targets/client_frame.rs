//! The replica's reader of client connections: a hello, then client frames.
#![no_main]

use chorus_proto::{ClientFrame, Hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chorus_fuzz::read_stream::<Hello, ClientFrame>(data, chorus_limits::CLIENT_FRAME_BYTES_MAX);
});
