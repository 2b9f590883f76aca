//! Loading a snapshot file of arbitrary bytes through the snapshot store
//! (header, trailer, checksum) and the chat state decoder: an error or a
//! state that passes its checks and re-encodes to itself, never a panic.
#![no_main]

use chorus_chat::ChatState;
use chorus_store::{Blobs, MemBlobs, Snapshots};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = ChatState::read_snapshot(data) {
        assert_eq!(ChatState::read_snapshot(&state.to_snapshot()[..]).as_ref(), Ok(&state));
    }
    let mut blobs = MemBlobs::new();
    blobs.create("snapshot-00000000000000000001.chs").expect("create");
    blobs.append("snapshot-00000000000000000001.chs", data).expect("append");
    let Ok(snapshots) = Snapshots::open(blobs) else { return };
    let Ok(reader) = snapshots.reader(1) else { return };
    let _ = ChatState::read_snapshot(std::io::BufReader::new(reader));
});
