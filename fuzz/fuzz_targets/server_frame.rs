//! The client library's reader of a replica's frames (replies, deliveries).
//! A replica sends no hello, so the first frame is read as a server frame too.
#![no_main]

use chorus_proto::ServerFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chorus_fuzz::read_stream::<ServerFrame, ServerFrame>(data, chorus_limits::CLIENT_FRAME_BYTES_MAX);
});
