//! Rivulet's canonical state file: backend-independent `(key group, key, value)` entries.
//!
//! Savepoints and heap checkpoints are written in this format, and every backend restores
//! from it at any parallelism, so the format is fixed forever: a change means a new format
//! version, and readers keep accepting every older version.
//!
//! # Format, version 1
//!
//! All integers are big-endian unless marked *varint*: unsigned LEB128 (7 bits per byte,
//! least significant group first, high bit set on every byte but the last), at most 5 bytes,
//! value at most `u32::MAX`.
//!
//! ```text
//! file    = header entry* trailer
//!
//! header  (20 bytes)
//!   0..8    magic                  b"RIVSTATE"
//!   8..12   format version   u32   1
//!   12..16  first key group  u32   inclusive
//!   16..20  end key group    u32   exclusive (first <= end)
//!
//! entry
//!   key group     u32     first <= key group < end
//!   key length    varint
//!   key           bytes
//!   value length  varint
//!   value         bytes
//!
//! trailer (12 bytes)
//!   entry count   u64     number of entries
//!   checksum      u32     CRC-32C (Castagnoli) of every byte before it: header, entries
//!                         and entry count
//! ```
//!
//! Entries are strictly increasing by `(key group, key)`, keys compared bytewise, so a key
//! appears at most once. Entries end where the trailer begins, 12 bytes before the end of
//! the file. A truncated or damaged file fails its checksum, and a file whose structure
//! disagrees with its header or trailer is rejected: both are [`StateError::Corrupt`].
//!
//! # Reading and writing
//!
//! [`write_file`] and [`Writer`] stream entries through a buffer into a temporary file next
//! to the target, fsync it, and rename it into place, so a file under its final name is
//! always complete. [`read_file`] streams the file twice with a fixed-size buffer: first it
//! verifies the checksum and the structure of the whole file, then it hands the entries of
//! the requested key groups to the caller. The callback therefore never sees an entry of a
//! file that turns out to be corrupt. [`export`] writes the state of any backend.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{StateBackend, StateError};

/// First bytes of every canonical state file.
pub const MAGIC: [u8; 8] = *b"RIVSTATE";
/// The format version this build writes; it reads every version up to this one.
pub const FORMAT_VERSION: u32 = 1;

const HEADER_LEN: u64 = 20;
const TRAILER_LEN: u64 = 12;
/// Longest varint encoding of a `u32`.
const MAX_VARINT_LEN: usize = 5;
const BUFFER_SIZE: usize = 256 * 1024;

/// A consumer of `(key group, key, value)` entries.
pub use super::EntryFn;

/// What was written or read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Entries in the file.
    pub entries: u64,
    /// Entries in the requested key groups: handed to the callback by [`read_file`]; equal to
    /// `entries` when writing.
    pub entries_in_range: u64,
    /// Size of the file in bytes (every byte of it is read when reading).
    pub bytes: u64,
    /// CRC-32C of the whole file, trailer included, as recorded in snapshot manifests.
    pub file_crc32c: u32,
}

/// Writes `entries` — `(key group, key, value)`, sorted by `(key group, key)`, every key
/// group in `range` — to a canonical file at `path`, replacing any file there.
pub fn write_file<K, V>(
    path: &Path,
    range: Range<u32>,
    entries: impl IntoIterator<Item = (u32, K, V)>,
) -> Result<FileStats, StateError>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut writer = Writer::create(path, range)?;
    for (kg, key, value) in entries {
        writer.append(kg, key.as_ref(), value.as_ref())?;
    }
    writer.finish()
}

/// Writes the entries of `backend` whose key group is in `range` to a canonical file at
/// `path` (savepoints, and moving state between backends).
pub fn export(
    backend: &mut dyn StateBackend,
    range: Range<u32>,
    path: &Path,
) -> Result<FileStats, StateError> {
    let mut writer = Writer::create(path, range.clone())?;
    let mut failed = None;
    backend.for_each(&mut |kg, key, value| {
        if failed.is_none() && range.contains(&kg) {
            if let Err(e) = writer.append(kg, key, value) {
                failed = Some(e);
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => writer.finish(),
    }
}

/// Writes the state of any backend as one canonical file per key group that holds
/// entries, named `kg-<key group>.kg` in `dir`: the savepoint layout, so a worker restoring
/// at any parallelism downloads exactly the key groups it owns.
pub fn export_by_key_group(
    backend: &mut dyn StateBackend,
    range: Range<u32>,
    dir: &Path,
) -> Result<Vec<super::LocalStateFile>, StateError> {
    let mut files = Vec::new();
    let mut current: Option<(u32, Writer)> = None;
    let mut failed = None;
    backend.for_each(&mut |kg, key, value| {
        if failed.is_some() || !range.contains(&kg) {
            return;
        }
        if current.as_ref().is_none_or(|(g, _)| *g != kg) {
            if let Some((g, w)) = current.take() {
                match w.finish() {
                    Ok(_) => files.push(kg_file(dir, g)),
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                }
            }
            match Writer::create(&dir.join(format!("kg-{kg}.kg")), kg..kg + 1) {
                Ok(w) => current = Some((kg, w)),
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            }
        }
        if let Some((_, w)) = current.as_mut() {
            if let Err(e) = w.append(kg, key, value) {
                failed = Some(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some((g, w)) = current.take() {
        w.finish()?;
        files.push(kg_file(dir, g));
    }
    Ok(files)
}

fn kg_file(dir: &Path, kg: u32) -> super::LocalStateFile {
    super::LocalStateFile {
        path: dir.join(format!("kg-{kg}.kg")),
        format: rivulet_api::manifest::StateFileFormat::Canonical,
        key_group_start: kg,
        key_group_end: kg + 1,
        immutable: false,
    }
}

/// Calls `f` with every entry of the canonical file at `path` whose key group is in `range`,
/// in `(key group, key)` order, after verifying the whole file.
pub fn read_file(
    path: &Path,
    range: Range<u32>,
    f: &mut EntryFn<'_>,
) -> Result<FileStats, StateError> {
    let stats = verify(path, &range)?;
    let mut reader = Reader::open(path, false)?;
    let header = reader.header()?;
    let entries_end = reader.len - TRAILER_LEN;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut delivered = 0;
    while reader.offset() < entries_end {
        let kg = reader.u32()?;
        if kg >= range.end {
            // Entries are sorted by key group: nothing further is in range.
            break;
        }
        let key_len = reader.varint()?;
        if kg < range.start {
            reader.skip(u64::from(key_len))?;
            let value_len = reader.varint()?;
            reader.skip(u64::from(value_len))?;
            continue;
        }
        reader.bytes(key_len, &mut key)?;
        let value_len = reader.varint()?;
        reader.bytes(value_len, &mut value)?;
        f(kg, &key, &value);
        delivered += 1;
    }
    if delivered != stats.entries_in_range {
        // The file changed between the passes.
        return Err(reader.corrupt(format!(
            "{delivered} entries of key groups {range:?} read, {} verified (header {header:?})",
            stats.entries_in_range
        )));
    }
    Ok(stats)
}

/// The first pass of [`read_file`]: checksum, header, entry structure and order, count.
fn verify(path: &Path, range: &Range<u32>) -> Result<FileStats, StateError> {
    let mut reader = Reader::open(path, true)?;
    let header = reader.header()?;
    let entries_end = reader.len - TRAILER_LEN;
    let mut prev_kg = None;
    let (mut prev_key, mut key) = (Vec::new(), Vec::new());
    let (mut entries, mut in_range) = (0u64, 0u64);
    while reader.offset() < entries_end {
        let at = reader.offset();
        let kg = reader.u32()?;
        if !header.contains(&kg) {
            return Err(reader.corrupt(format!(
                "entry at byte {at} has key group {kg}, outside the file's {header:?}"
            )));
        }
        let key_len = reader.varint()?;
        check_fits(&reader, key_len, entries_end, at)?;
        reader.bytes(key_len, &mut key)?;
        if let Some(prev_kg) = prev_kg {
            if (prev_kg, prev_key.as_slice()) >= (kg, key.as_slice()) {
                return Err(reader.corrupt(format!(
                    "entry at byte {at} is not after its predecessor in (key group, key) order"
                )));
            }
        }
        let value_len = reader.varint()?;
        check_fits(&reader, value_len, entries_end, at)?;
        reader.skip(u64::from(value_len))?;
        if reader.offset() > entries_end {
            return Err(reader.corrupt(format!("entry at byte {at} runs into the trailer")));
        }
        entries += 1;
        if range.contains(&kg) {
            in_range += 1;
        }
        prev_kg = Some(kg);
        std::mem::swap(&mut prev_key, &mut key);
    }
    let count = reader.u64()?;
    let crc_before_checksum = reader.crc;
    let mut checksum = [0u8; 4];
    reader.exact(&mut checksum)?;
    let stored = u32::from_be_bytes(checksum);
    if stored != crc_before_checksum {
        return Err(reader.corrupt(format!(
            "checksum mismatch: stored {stored:#010x}, computed {crc_before_checksum:#010x} \
             (truncated or damaged)"
        )));
    }
    if count != entries {
        return Err(reader.corrupt(format!(
            "trailer counts {count} entries, the file holds {entries}"
        )));
    }
    Ok(FileStats {
        entries,
        entries_in_range: in_range,
        bytes: reader.len,
        file_crc32c: crc32c::crc32c_append(crc_before_checksum, &checksum),
    })
}

/// Rejects a length that cannot fit before the trailer (before allocating for it).
fn check_fits(reader: &Reader, len: u32, entries_end: u64, at: u64) -> Result<(), StateError> {
    if reader.offset() + u64::from(len) > entries_end {
        return Err(reader.corrupt(format!(
            "entry at byte {at} has a length of {len} bytes, past the end of the entries"
        )));
    }
    Ok(())
}

/// A streaming canonical-file writer: [`Writer::create`], [`Writer::append`] in
/// `(key group, key)` order, then [`Writer::finish`]. Dropped unfinished, it removes its
/// temporary file and leaves nothing at the target path.
pub struct Writer {
    path: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    range: Range<u32>,
    crc: u32,
    bytes: u64,
    entries: u64,
    prev: Option<(u32, Vec<u8>)>,
    /// Set once the file is under its final name.
    finished: bool,
}

impl Writer {
    /// Starts a canonical file for the key groups `range` at `path`.
    pub fn create(path: &Path, range: Range<u32>) -> Result<Self, StateError> {
        if range.start > range.end {
            return Err(invalid_input(
                path,
                format!("empty key-group range {range:?} (start after end)"),
            ));
        }
        let mut tmp_name = path
            .file_name()
            .ok_or_else(|| invalid_input(path, "state file path has no file name".into()))?
            .to_owned();
        tmp_name.push(".tmp");
        let tmp_path = path.with_file_name(tmp_name);
        let file = File::create(&tmp_path).map_err(|e| io_error(&tmp_path, e))?;
        let mut writer = Writer {
            path: path.to_owned(),
            tmp_path,
            out: Some(BufWriter::with_capacity(BUFFER_SIZE, file)),
            range: range.clone(),
            crc: 0,
            bytes: 0,
            entries: 0,
            prev: None,
            finished: false,
        };
        let mut header = [0u8; HEADER_LEN as usize];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        header[12..16].copy_from_slice(&range.start.to_be_bytes());
        header[16..20].copy_from_slice(&range.end.to_be_bytes());
        writer.put(&header)?;
        Ok(writer)
    }

    /// Appends one entry; it must come after the previous one in `(key group, key)` order
    /// and its key group must be in the file's range.
    pub fn append(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        if !self.range.contains(&kg) {
            return Err(invalid_input(
                &self.path,
                format!(
                    "entry of key group {kg} outside the file's {:?}",
                    self.range
                ),
            ));
        }
        let key_len = encoded_len(&self.path, key)?;
        let value_len = encoded_len(&self.path, value)?;
        match &mut self.prev {
            Some((prev_kg, prev_key)) => {
                if (*prev_kg, prev_key.as_slice()) >= (kg, key) {
                    return Err(invalid_input(
                        &self.path,
                        format!(
                            "entries out of (key group, key) order or duplicated at key group \
                             {kg}"
                        ),
                    ));
                }
                *prev_kg = kg;
                prev_key.clear();
                prev_key.extend_from_slice(key);
            }
            None => self.prev = Some((kg, key.to_vec())),
        }
        let mut head = [0u8; 4 + MAX_VARINT_LEN];
        head[..4].copy_from_slice(&kg.to_be_bytes());
        let n = 4 + put_varint(&mut head[4..], key_len);
        self.put(&head[..n])?;
        self.put(key)?;
        let mut head = [0u8; MAX_VARINT_LEN];
        let n = put_varint(&mut head, value_len);
        self.put(&head[..n])?;
        self.put(value)?;
        self.entries += 1;
        Ok(())
    }

    /// Writes the trailer, fsyncs, and moves the file to its final path.
    pub fn finish(mut self) -> Result<FileStats, StateError> {
        self.put(&self.entries.to_be_bytes())?;
        let checksum = self.crc.to_be_bytes();
        self.put(&checksum)?;
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| io_error(&self.tmp_path, e))?;
            out.get_ref()
                .sync_all()
                .map_err(|e| io_error(&self.tmp_path, e))?;
        }
        fs::rename(&self.tmp_path, &self.path).map_err(|e| io_error(&self.path, e))?;
        self.finished = true;
        sync_parent(&self.path)?;
        Ok(FileStats {
            entries: self.entries,
            entries_in_range: self.entries,
            bytes: self.bytes,
            file_crc32c: self.crc,
        })
    }

    /// Writes `bytes`, adding them to the checksum.
    fn put(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| invalid_input(&self.path, "canonical writer already finished".into()))?;
        out.write_all(bytes)
            .map_err(|e| io_error(&self.tmp_path, e))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.out.take());
        if !self.finished {
            if let Err(e) = fs::remove_file(&self.tmp_path) {
                tracing::warn!(path = %self.tmp_path.display(), error = %e,
                    "could not remove an unfinished state file");
            }
        }
    }
}

fn encoded_len(path: &Path, bytes: &[u8]) -> Result<u32, StateError> {
    u32::try_from(bytes.len()).map_err(|_| {
        invalid_input(
            path,
            format!("key or value of {} bytes is over 4 GiB", bytes.len()),
        )
    })
}

/// Encodes `v` as a varint at the start of `buf` (at least 5 bytes); returns its length.
fn put_varint(buf: &mut [u8], mut v: u32) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

/// Makes a rename durable (directory entries are only durable once the directory is synced).
#[cfg(unix)]
fn sync_parent(path: &Path) -> Result<(), StateError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e)),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> Result<(), StateError> {
    Ok(())
}

/// A sequential reader with its own buffer that checksums bytes as it loads them.
struct Reader {
    path: PathBuf,
    file: File,
    /// Size of the file.
    len: u64,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[lo..hi]`.
    lo: usize,
    hi: usize,
    /// File offset of `buf[hi]`.
    loaded: u64,
    /// Whether to checksum (the first pass does, and then may not skip with a seek).
    checksum: bool,
    /// CRC-32C of bytes `[0, min(loaded, len - 4))`.
    crc: u32,
}

impl Reader {
    fn open(path: &Path, checksum: bool) -> Result<Self, StateError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let len = file.metadata().map_err(|e| io_error(path, e))?.len();
        let reader = Reader {
            path: path.to_owned(),
            file,
            len,
            buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            lo: 0,
            hi: 0,
            loaded: 0,
            checksum,
            crc: 0,
        };
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(reader.corrupt(format!(
                "{len} bytes, shorter than an empty state file (truncated?)"
            )));
        }
        Ok(reader)
    }

    fn corrupt(&self, reason: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    /// File offset of the next unconsumed byte.
    fn offset(&self) -> u64 {
        self.loaded - (self.hi - self.lo) as u64
    }

    /// Loads the next chunk; fails at the end of the file.
    fn fill(&mut self) -> Result<(), StateError> {
        debug_assert_eq!(self.lo, self.hi);
        let n = loop {
            match self.file.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(&self.path, e)),
            }
        };
        if n == 0 {
            return Err(self.corrupt(format!(
                "ends at byte {} while {} bytes were expected (truncated while reading?)",
                self.loaded, self.len
            )));
        }
        if self.checksum {
            let crc_end = self.len - 4;
            let upto = crc_end.saturating_sub(self.loaded).min(n as u64) as usize;
            self.crc = crc32c::crc32c_append(self.crc, &self.buf[..upto]);
        }
        self.lo = 0;
        self.hi = n;
        self.loaded += n as u64;
        Ok(())
    }

    fn exact(&mut self, out: &mut [u8]) -> Result<(), StateError> {
        let mut done = 0;
        while done < out.len() {
            if self.lo == self.hi {
                self.fill()?;
            }
            let n = (self.hi - self.lo).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.buf[self.lo..self.lo + n]);
            self.lo += n;
            done += n;
        }
        Ok(())
    }

    /// Reads `len` bytes into `out`, replacing its contents.
    fn bytes(&mut self, len: u32, out: &mut Vec<u8>) -> Result<(), StateError> {
        let len = len as usize;
        if self.offset() + len as u64 > self.len {
            return Err(self.corrupt(format!(
                "a length of {len} bytes at byte {} runs past the end of the file",
                self.offset()
            )));
        }
        out.resize(len, 0);
        self.exact(out)
    }

    fn skip(&mut self, n: u64) -> Result<(), StateError> {
        let buffered = (self.hi - self.lo) as u64;
        if n <= buffered {
            self.lo += n as usize;
            return Ok(());
        }
        if !self.checksum {
            let target = self.offset() + n;
            if target > self.len {
                return Err(self.corrupt(format!(
                    "skipping {n} bytes at byte {} runs past the end of the file",
                    self.offset()
                )));
            }
            self.file
                .seek(SeekFrom::Start(target))
                .map_err(|e| io_error(&self.path, e))?;
            self.lo = 0;
            self.hi = 0;
            self.loaded = target;
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            if self.lo == self.hi {
                self.fill()?;
            }
            let step = ((self.hi - self.lo) as u64).min(left) as usize;
            self.lo += step;
            left -= step as u64;
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        if self.lo == self.hi {
            self.fill()?;
        }
        let b = self.buf[self.lo];
        self.lo += 1;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn varint(&mut self) -> Result<u32, StateError> {
        let at = self.offset();
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(v)
                    .map_err(|_| self.corrupt(format!("length at byte {at} exceeds u32")));
            }
        }
        Err(self.corrupt(format!("length at byte {at} is longer than 5 bytes")))
    }

    /// Reads and checks the header; returns the file's key-group range.
    fn header(&mut self) -> Result<Range<u32>, StateError> {
        let mut magic = [0u8; 8];
        self.exact(&mut magic)?;
        if magic != MAGIC {
            return Err(self.corrupt("not a Rivulet canonical state file (bad magic)".into()));
        }
        let version = self.u32()?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(self.corrupt(format!(
                "format version {version}, this build reads versions 1 to {FORMAT_VERSION}"
            )));
        }
        let start = self.u32()?;
        let end = self.u32()?;
        if start > end {
            return Err(self.corrupt(format!("key-group range {start}..{end} in the header")));
        }
        Ok(start..end)
    }
}

fn io_error(path: &Path, source: io::Error) -> StateError {
    StateError::Io {
        path: path.to_owned(),
        source,
    }
}

fn invalid_input(path: &Path, msg: String) -> StateError {
    io_error(path, io::Error::new(io::ErrorKind::InvalidInput, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entry = (u32, Vec<u8>, Vec<u8>);

    fn sample() -> Vec<Entry> {
        let mut v = Vec::new();
        for kg in [3u32, 4, 7, 9] {
            for i in 0..50u32 {
                let key = format!("key-{i:03}").into_bytes();
                // Values of varied sizes, including empty and multi-byte varint lengths.
                let value = vec![(kg + i) as u8; (i as usize * 37) % 400];
                v.push((kg, key, value));
            }
        }
        v.push((9, Vec::new(), b"an empty key".to_vec()));
        v.sort();
        v
    }

    fn write(path: &Path, range: Range<u32>, entries: &[Entry]) -> FileStats {
        write_file(path, range, entries.iter().map(|(kg, k, v)| (*kg, k, v))).unwrap()
    }

    fn read(path: &Path, range: Range<u32>) -> Result<(Vec<Entry>, FileStats), StateError> {
        let mut out = Vec::new();
        let stats = read_file(path, range, &mut |kg, k, v| {
            out.push((kg, k.to_vec(), v.to_vec()))
        })?;
        Ok((out, stats))
    }

    #[test]
    fn roundtrip_and_range_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.kg");
        let entries = sample();
        let written = write(&path, 0..16, &entries);
        assert_eq!(written.entries, entries.len() as u64);
        assert_eq!(written.bytes, fs::metadata(&path).unwrap().len());
        assert_eq!(
            written.file_crc32c,
            crc32c::crc32c(&fs::read(&path).unwrap())
        );
        assert!(!dir.path().join("s.kg.tmp").exists());

        let (all, stats) = read(&path, 0..16).unwrap();
        assert_eq!(all, entries);
        assert_eq!(stats, written);

        let (some, stats) = read(&path, 4..9).unwrap();
        let expected: Vec<Entry> = entries
            .iter()
            .filter(|e| (4..9).contains(&e.0))
            .cloned()
            .collect();
        assert_eq!(some, expected);
        assert_eq!(stats.entries_in_range, expected.len() as u64);
        assert_eq!(stats.entries, entries.len() as u64);

        let (none, _) = read(&path, 10..12).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn empty_file_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.kg");
        let stats = write(&path, 5..5, &[]);
        assert_eq!(stats.bytes, HEADER_LEN + TRAILER_LEN);
        let (all, stats) = read(&path, 0..100).unwrap();
        assert!(all.is_empty());
        assert_eq!(stats.entries, 0);
    }

    #[test]
    fn truncation_is_detected_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.kg");
        write(&path, 0..16, &sample()[..20]);
        let full = fs::read(&path).unwrap();
        let cut = dir.path().join("cut.kg");
        for len in 0..full.len() {
            fs::write(&cut, &full[..len]).unwrap();
            let mut called = false;
            let res = read_file(&cut, 0..16, &mut |_, _, _| called = true);
            assert!(
                matches!(res, Err(StateError::Corrupt { .. })),
                "truncated to {len}: {res:?}"
            );
            assert!(!called, "callback saw entries of a file truncated to {len}");
        }
    }

    #[test]
    fn corruption_is_detected_at_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.kg");
        write(&path, 0..16, &sample()[..20]);
        let full = fs::read(&path).unwrap();
        let bad = dir.path().join("bad.kg");
        for i in 0..full.len() {
            let mut damaged = full.clone();
            damaged[i] ^= 0x20;
            fs::write(&bad, &damaged).unwrap();
            let mut called = false;
            let res = read_file(&bad, 0..16, &mut |_, _, _| called = true);
            assert!(
                matches!(res, Err(StateError::Corrupt { .. })),
                "flipped byte {i}: {res:?}"
            );
            assert!(!called);
        }
    }

    #[test]
    fn newer_versions_and_foreign_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.kg");
        write(&path, 0..4, &[(1, b"k".to_vec(), b"v".to_vec())]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_be_bytes());
        let n = bytes.len();
        let crc = crc32c::crc32c(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&crc.to_be_bytes());
        fs::write(&path, &bytes).unwrap();
        match read(&path, 0..4) {
            Err(StateError::Corrupt { reason, .. }) => assert!(reason.contains("version 2")),
            other => panic!("{other:?}"),
        }
        fs::write(&path, vec![0u8; 100]).unwrap();
        assert!(matches!(read(&path, 0..4), Err(StateError::Corrupt { .. })));
        assert!(matches!(
            read(&dir.path().join("missing"), 0..4),
            Err(StateError::Io { .. })
        ));
    }

    #[test]
    fn writer_rejects_unsorted_duplicate_and_out_of_range_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.kg");
        let cases: [Vec<Entry>; 3] = [
            vec![(2, b"b".to_vec(), vec![]), (2, b"a".to_vec(), vec![])],
            vec![(2, b"a".to_vec(), vec![]), (2, b"a".to_vec(), vec![])],
            vec![(1, b"a".to_vec(), vec![]), (9, b"a".to_vec(), vec![])],
        ];
        for entries in cases {
            let res = write_file(&path, 0..4, entries.iter().map(|(kg, k, v)| (*kg, k, v)));
            assert!(matches!(res, Err(StateError::Io { .. })), "{res:?}");
            assert!(!path.exists());
            assert!(!dir.path().join("s.kg.tmp").exists());
        }
    }

    #[test]
    fn varint_encoding_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.kg");
        let entries: Vec<Entry> = [0usize, 1, 127, 128, 16383, 16384, 70000]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0, vec![i as u8], vec![0xab; n]))
            .collect();
        write(&path, 0..1, &entries);
        assert_eq!(read(&path, 0..1).unwrap().0, entries);
        let mut buf = [0u8; MAX_VARINT_LEN];
        assert_eq!(put_varint(&mut buf, u32::MAX), 5);
        assert_eq!(buf, [0xff, 0xff, 0xff, 0xff, 0x0f]);
    }
}
