//! Snapshot files: the replicated state as of one slot, written once in
//! the background, checksummed, and sent to peers in chunks.
//!
//! A snapshot `snapshot-<slot>.chs` is laid out as (integers little-endian):
//!
//! | part    | bytes | contents                                   |
//! |---------|-------|--------------------------------------------|
//! | header  | 8     | magic `CHORUSSN`                           |
//! |         | 4     | format version ([`SNAPSHOT_FORMAT`])       |
//! |         | 8     | slot                                       |
//! | body    | n     | the state, as the caller encoded it        |
//! | trailer | 8     | n                                          |
//! |         | 4     | CRC-32 of header and body                  |
//! |         | 8     | magic `CHSNDONE`                           |
//!
//! A snapshot is written to `snapshot-<slot>.tmp`, fsynced, and renamed into
//! place (the rename is made durable), so a complete name always holds a
//! complete file; leftovers of a crash are removed on open. A snapshot
//! received from a peer grows in `incoming-<slot>.part` (kept across
//! restarts, so a transfer resumes where it stopped), and is verified in
//! full before it is renamed into place.

use crate::blobs::Blobs;
use crate::StoreError;
use chorus_paxos::Slot;
use std::io::{Read, Write};

/// Version of the snapshot layout this build writes and reads. 2: queued
/// messages hold sender and text in one string and no recipient.
pub const SNAPSHOT_FORMAT: u32 = 4;

const HEADER_MAGIC: &[u8; 8] = b"CHORUSSN";
const TRAILER_MAGIC: &[u8; 8] = b"CHSNDONE";
const HEADER_BYTES: u64 = 20;
const TRAILER_BYTES: u64 = 20;
/// Bytes gathered before one append to the file.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Bytes read at a time when verifying a received file.
const VERIFY_BUFFER_BYTES: usize = 1024 * 1024;

/// A complete snapshot on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotInfo {
    /// Every slot at or below this is reflected in the snapshot.
    pub slot: Slot,
    /// Length of the whole file, header and trailer included.
    pub bytes: u64,
}

/// The snapshots of one replica, over any [`Blobs`].
#[derive(Debug)]
pub struct Snapshots<B: Blobs> {
    blobs: B,
    /// The partial incoming snapshot and its length.
    incoming: Option<(Slot, u64)>,
}

fn complete_name(slot: Slot) -> String {
    format!("snapshot-{slot:020}.chs")
}

fn temporary_name(slot: Slot) -> String {
    format!("snapshot-{slot:020}.tmp")
}

fn incoming_name(slot: Slot) -> String {
    format!("incoming-{slot:020}.part")
}

/// The slot in a file name of the form `{prefix}<20 digits>{suffix}`.
fn parse_slot(name: &str, prefix: &str, suffix: &str) -> Option<Slot> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt(message.into())
}

impl<B: Blobs> Snapshots<B> {
    /// Takes over `blobs`, removing snapshots left half-written by a crash.
    pub fn open(mut blobs: B) -> Result<Self, StoreError> {
        for (name, _) in blobs.list()? {
            if parse_slot(&name, "snapshot-", ".tmp").is_some() {
                blobs.remove(&name)?;
            }
        }
        Ok(Snapshots { blobs, incoming: None })
    }

    /// Takes over `blobs` without cleaning up: for a second handle on a
    /// directory another thread writes snapshots into.
    pub fn attach(blobs: B) -> Self {
        Snapshots { blobs, incoming: None }
    }

    /// Renames a snapshot that failed verification out of the way (to
    /// `.corrupt`), so it is neither loaded nor sent to a peer again.
    pub fn quarantine(&mut self, slot: Slot) -> Result<(), StoreError> {
        let name = complete_name(slot);
        self.blobs.rename(&name, &format!("{name}.corrupt"))
    }

    /// The underlying files.
    pub fn blobs(&self) -> &B {
        &self.blobs
    }

    /// The underlying files, for a simulated crash.
    pub fn blobs_mut(&mut self) -> &mut B {
        &mut self.blobs
    }

    /// Every complete snapshot, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, StoreError> {
        let mut found: Vec<SnapshotInfo> = self
            .blobs
            .list()?
            .into_iter()
            .filter_map(|(name, bytes)| Some(SnapshotInfo { slot: parse_slot(&name, "snapshot-", ".chs")?, bytes }))
            .collect();
        found.sort_by_key(|info| info.slot);
        Ok(found)
    }

    /// The newest complete snapshot, if any.
    pub fn newest(&self) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self.list()?.pop())
    }

    /// Total bytes of every snapshot file, partial ones included.
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.blobs.list()?.iter().map(|(_, bytes)| bytes).sum())
    }

    /// Starts writing the snapshot of `slot`; the caller streams the state
    /// into the writer and calls [`SnapshotWriter::finish`].
    pub fn writer(&mut self, slot: Slot) -> Result<SnapshotWriter<'_, B>, StoreError> {
        let name = temporary_name(slot);
        self.blobs.create(&name)?;
        let mut writer = SnapshotWriter {
            blobs: &mut self.blobs,
            name,
            slot,
            crc: crc32fast::Hasher::new(),
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            body_bytes: 0,
        };
        let mut header = Vec::with_capacity(HEADER_BYTES as usize);
        header.extend_from_slice(HEADER_MAGIC);
        header.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
        header.extend_from_slice(&slot.to_le_bytes());
        writer.crc.update(&header);
        writer.buffer.extend_from_slice(&header);
        Ok(writer)
    }

    /// Opens the body of snapshot `slot` for reading. The header and
    /// trailer are checked here; the checksum when the body has been read
    /// to its end (a read past the body fails on a mismatch).
    pub fn reader(&self, slot: Slot) -> Result<SnapshotReader<'_, B>, StoreError> {
        let name = complete_name(slot);
        let bytes = self.list()?.into_iter().find(|info| info.slot == slot).map(|info| info.bytes);
        let bytes = bytes.ok_or_else(|| StoreError::Io(format!("{name}: no such snapshot")))?;
        let frame = read_frame(&self.blobs, &name, slot, bytes)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&frame.header);
        Ok(SnapshotReader {
            blobs: &self.blobs,
            name,
            position: HEADER_BYTES,
            end: HEADER_BYTES + frame.body_bytes,
            crc,
            expected_crc: frame.crc,
        })
    }

    /// Up to `max` raw bytes of snapshot `slot`'s file from `offset`, to
    /// send to a peer.
    pub fn read_chunk(&self, slot: Slot, offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        let mut chunk = vec![0; max];
        let read = self.blobs.read_at(&complete_name(slot), offset, &mut chunk)?;
        chunk.truncate(read);
        Ok(chunk)
    }

    /// A partial incoming snapshot left by an earlier transfer: its slot
    /// and how many bytes arrived.
    pub fn partial(&self) -> Result<Option<(Slot, u64)>, StoreError> {
        if self.incoming.is_some() {
            return Ok(self.incoming);
        }
        let found = self.blobs.list()?.into_iter();
        Ok(found.filter_map(|(name, bytes)| Some((parse_slot(&name, "incoming-", ".part")?, bytes))).max())
    }

    /// Prepares to receive snapshot `slot` and returns how many of its bytes
    /// are already here (a transfer resumes from there). Partial transfers
    /// of other slots are dropped.
    pub fn incoming(&mut self, slot: Slot) -> Result<u64, StoreError> {
        if let Some((held, length)) = self.incoming {
            if held == slot {
                return Ok(length);
            }
        }
        let mut length = None;
        for (name, bytes) in self.blobs.list()? {
            match parse_slot(&name, "incoming-", ".part") {
                Some(found) if found == slot => length = Some(bytes),
                Some(_) => self.blobs.remove(&name)?,
                None => {}
            }
        }
        let length = match length {
            Some(bytes) => bytes,
            None => {
                self.blobs.create(&incoming_name(slot))?;
                0
            }
        };
        self.incoming = Some((slot, length));
        Ok(length)
    }

    /// Appends a received chunk at `offset`, which must be where the
    /// partial file ends. Returns the new length.
    pub fn append_incoming(&mut self, slot: Slot, offset: u64, chunk: &[u8]) -> Result<u64, StoreError> {
        let length = self.incoming(slot)?;
        if offset != length {
            return Err(StoreError::Engine(format!("chunk at {offset} for a partial snapshot of {length} bytes")));
        }
        self.blobs.append(&incoming_name(slot), chunk)?;
        let length = length + chunk.len() as u64;
        self.incoming = Some((slot, length));
        Ok(length)
    }

    /// Verifies the received file in full, makes it durable and renames it
    /// into place. A file that fails verification is deleted, so the next
    /// transfer starts over, and the error returned.
    pub fn finish_incoming(&mut self, slot: Slot) -> Result<SnapshotInfo, StoreError> {
        let length = self.incoming(slot)?;
        let name = incoming_name(slot);
        self.incoming = None;
        if let Err(error) = verify(&self.blobs, &name, slot, length) {
            self.blobs.remove(&name)?;
            return Err(error);
        }
        self.blobs.sync(&name)?;
        self.blobs.rename(&name, &complete_name(slot))?;
        Ok(SnapshotInfo { slot, bytes: length })
    }

    /// Removes complete snapshots older than `keep` and partial transfers
    /// at or below it.
    pub fn prune(&mut self, keep: Slot) -> Result<(), StoreError> {
        for (name, _) in self.blobs.list()? {
            let old_complete = parse_slot(&name, "snapshot-", ".chs").is_some_and(|slot| slot < keep);
            let old_incoming = parse_slot(&name, "incoming-", ".part").is_some_and(|slot| slot <= keep);
            if old_complete || old_incoming {
                self.blobs.remove(&name)?;
            }
        }
        if self.incoming.is_some_and(|(slot, _)| slot <= keep) {
            self.incoming = None;
        }
        Ok(())
    }
}

/// The checked header and trailer of a snapshot file.
struct Frame {
    header: [u8; HEADER_BYTES as usize],
    body_bytes: u64,
    crc: u32,
}

/// Checks the header and trailer of a file of `bytes` bytes.
fn read_frame<B: Blobs>(blobs: &B, name: &str, slot: Slot, bytes: u64) -> Result<Frame, StoreError> {
    if bytes < HEADER_BYTES + TRAILER_BYTES {
        return Err(corrupt(format!("{name}: {bytes} bytes is shorter than a snapshot frame")));
    }
    let mut header = [0; HEADER_BYTES as usize];
    let mut trailer = [0; TRAILER_BYTES as usize];
    let read = blobs.read_at(name, 0, &mut header)? + blobs.read_at(name, bytes - TRAILER_BYTES, &mut trailer)?;
    if read as u64 != HEADER_BYTES + TRAILER_BYTES || &header[..8] != HEADER_MAGIC || &trailer[12..] != TRAILER_MAGIC {
        return Err(corrupt(format!("{name}: not a snapshot (bad magic)")));
    }
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let found_slot = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let body_bytes = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
    if format != SNAPSHOT_FORMAT {
        return Err(corrupt(format!("{name}: snapshot format {format}; this build reads {SNAPSHOT_FORMAT}")));
    }
    if found_slot != slot || body_bytes != bytes - HEADER_BYTES - TRAILER_BYTES {
        return Err(corrupt(format!("{name}: header or trailer does not match the file")));
    }
    Ok(Frame { header, body_bytes, crc })
}

/// Reads a whole file and checks its frame and checksum.
fn verify<B: Blobs>(blobs: &B, name: &str, slot: Slot, bytes: u64) -> Result<(), StoreError> {
    let Frame { body_bytes, crc: expected, .. } = read_frame(blobs, name, slot, bytes)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buffer = vec![0; VERIFY_BUFFER_BYTES];
    let mut position = 0;
    let end = HEADER_BYTES + body_bytes;
    while position < end {
        let want = ((end - position) as usize).min(buffer.len());
        let read = blobs.read_at(name, position, &mut buffer[..want])?;
        if read == 0 {
            return Err(corrupt(format!("{name}: ends early")));
        }
        crc.update(&buffer[..read]);
        position += read as u64;
    }
    if crc.finalize() != expected {
        return Err(corrupt(format!("{name}: checksum mismatch")));
    }
    Ok(())
}

/// Streams a snapshot's body into its file. Dropping it without
/// [`SnapshotWriter::finish`] leaves a `.tmp` file that the next open removes.
pub struct SnapshotWriter<'a, B: Blobs> {
    blobs: &'a mut B,
    name: String,
    slot: Slot,
    crc: crc32fast::Hasher,
    buffer: Vec<u8>,
    body_bytes: u64,
}

impl<B: Blobs> SnapshotWriter<'_, B> {
    fn flush_buffer(&mut self) -> Result<(), StoreError> {
        if !self.buffer.is_empty() {
            self.blobs.append(&self.name, &self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the trailer, fsyncs the file and renames it into place.
    pub fn finish(mut self) -> Result<SnapshotInfo, StoreError> {
        let crc = self.crc.clone().finalize();
        self.buffer.extend_from_slice(&self.body_bytes.to_le_bytes());
        self.buffer.extend_from_slice(&crc.to_le_bytes());
        self.buffer.extend_from_slice(TRAILER_MAGIC);
        self.flush_buffer()?;
        self.blobs.sync(&self.name)?;
        self.blobs.rename(&self.name, &complete_name(self.slot))?;
        Ok(SnapshotInfo { slot: self.slot, bytes: HEADER_BYTES + self.body_bytes + TRAILER_BYTES })
    }
}

impl<B: Blobs> Write for SnapshotWriter<'_, B> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.crc.update(bytes);
        self.body_bytes += bytes.len() as u64;
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.flush_buffer().map_err(std::io::Error::other)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a snapshot's body; reading past its end checks the checksum.
pub struct SnapshotReader<'a, B: Blobs> {
    blobs: &'a B,
    name: String,
    /// Next byte of the file to read.
    position: u64,
    /// First byte after the body.
    end: u64,
    crc: crc32fast::Hasher,
    expected_crc: u32,
}

impl<B: Blobs> Read for SnapshotReader<'_, B> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.position == self.end {
            if self.crc.clone().finalize() != self.expected_crc {
                let message = format!("{}: checksum mismatch", self.name);
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
            }
            return Ok(0);
        }
        let want = ((self.end - self.position) as usize).min(buffer.len());
        let read = self.blobs.read_at(&self.name, self.position, &mut buffer[..want]).map_err(std::io::Error::other)?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{}: ends early", self.name)));
        }
        self.crc.update(&buffer[..read]);
        self.position += read as u64;
        Ok(read)
    }
}
