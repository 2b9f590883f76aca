//! [`Blobs`]: the few file operations snapshots need, so the snapshot
//! format is written once and runs on a real directory ([`DirBlobs`]) and
//! in the simulator ([`MemBlobs`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// A flat directory of named byte files.
pub trait Blobs {
    /// Every file with its length.
    fn list(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Creates `name` empty (truncating it if it exists).
    fn create(&mut self, name: &str) -> Result<(), StoreError>;
    /// Appends to `name`.
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Makes `name`'s contents durable (fsync).
    fn sync(&mut self, name: &str) -> Result<(), StoreError>;
    /// Renames `from` to `to`, replacing `to`, durably (the directory is synced).
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StoreError>;
    /// Removes `name`; a missing file is not an error.
    fn remove(&mut self, name: &str) -> Result<(), StoreError>;
    /// Reads up to `buffer.len()` bytes of `name` at `offset`; 0 at the end.
    fn read_at(&self, name: &str, offset: u64, buffer: &mut [u8]) -> Result<usize, StoreError>;
}

/// Files in one directory of the real file system.
#[derive(Clone, Debug)]
pub struct DirBlobs {
    dir: PathBuf,
}

impl DirBlobs {
    /// Uses `dir`, creating it (and making its name durable) if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|error| io_error("creating", dir, error))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(DirBlobs { dir: dir.to_path_buf() })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Blobs for DirBlobs {
    fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|error| io_error("listing", &self.dir, error))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| io_error("listing", &self.dir, error))?;
            let metadata = entry.metadata().map_err(|error| io_error("reading", &entry.path(), error))?;
            if let (true, Some(name)) = (metadata.is_file(), entry.file_name().to_str()) {
                files.push((name.to_string(), metadata.len()));
            }
        }
        files.sort();
        Ok(files)
    }

    fn create(&mut self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        File::create(&path).map(drop).map_err(|error| io_error("creating", &path, error))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name);
        let mut file =
            OpenOptions::new().append(true).open(&path).map_err(|error| io_error("opening", &path, error))?;
        file.write_all(bytes).map_err(|error| io_error("writing", &path, error))
    }

    fn sync(&mut self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        let file = File::open(&path).map_err(|error| io_error("opening", &path, error))?;
        file.sync_all().map_err(|error| io_error("fsyncing", &path, error))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StoreError> {
        let (from, to) = (self.path(from), self.path(to));
        std::fs::rename(&from, &to).map_err(|error| io_error("renaming", &from, error))?;
        sync_dir(&self.dir)
    }

    fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error("removing", &path, error)),
            _ => Ok(()),
        }
    }

    fn read_at(&self, name: &str, offset: u64, buffer: &mut [u8]) -> Result<usize, StoreError> {
        let path = self.path(name);
        let mut file = File::open(&path).map_err(|error| io_error("opening", &path, error))?;
        file.seek(SeekFrom::Start(offset)).map_err(|error| io_error("seeking", &path, error))?;
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error("reading", &path, error)),
            }
        }
        Ok(filled)
    }
}

/// One in-memory file: its bytes and how many of them are durable.
#[derive(Clone, Debug, Default)]
struct MemFile {
    bytes: Vec<u8>,
    synced: usize,
}

/// The simulator's twin of [`DirBlobs`]. Names change durably at once
/// (as `DirBlobs::rename` syncs the directory); contents are durable only
/// up to the last `sync`, and [`MemBlobs::crash`] drops the rest.
#[derive(Clone, Debug, Default)]
pub struct MemBlobs {
    files: BTreeMap<String, MemFile>,
}

impl MemBlobs {
    /// An empty directory.
    pub fn new() -> Self {
        MemBlobs::default()
    }

    /// A crash: every file loses what was written after its last sync.
    pub fn crash(&mut self) {
        for file in self.files.values_mut() {
            file.bytes.truncate(file.synced);
        }
    }

    /// Total bytes held, for status and tests.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|file| file.bytes.len() as u64).sum()
    }

    fn file(&self, name: &str) -> Result<&MemFile, StoreError> {
        self.files.get(name).ok_or_else(|| StoreError::Io(format!("{name}: no such file")))
    }

    fn file_mut(&mut self, name: &str) -> Result<&mut MemFile, StoreError> {
        self.files.get_mut(name).ok_or_else(|| StoreError::Io(format!("{name}: no such file")))
    }
}

impl Blobs for MemBlobs {
    fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.files.iter().map(|(name, file)| (name.clone(), file.bytes.len() as u64)).collect())
    }

    fn create(&mut self, name: &str) -> Result<(), StoreError> {
        self.files.insert(name.to_string(), MemFile::default());
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.file_mut(name)?.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), StoreError> {
        let file = self.file_mut(name)?;
        file.synced = file.bytes.len();
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StoreError> {
        let file = self.files.remove(from).ok_or_else(|| StoreError::Io(format!("{from}: no such file")))?;
        self.files.insert(to.to_string(), file);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        self.files.remove(name);
        Ok(())
    }

    fn read_at(&self, name: &str, offset: u64, buffer: &mut [u8]) -> Result<usize, StoreError> {
        let bytes = &self.file(name)?.bytes;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let count = buffer.len().min(bytes.len() - start);
        buffer[..count].copy_from_slice(&bytes[start..start + count]);
        Ok(count)
    }
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io(format!("{action} {}: {error}", path.display()))
}

/// Makes the names inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).map_err(|error| io_error("opening", dir, error))?;
    handle.sync_all().map_err(|error| io_error("fsyncing", dir, error))
}
