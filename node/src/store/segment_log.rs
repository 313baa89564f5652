//! An append-only log of framed records in numbered segment files: where a node's delivery
//! bodies (and forks and blobs) live, durable after one `fdatasync` per append.
//!
//! ```text
//! DIR/00000000000000000001.seg   header: "KRNLOG01" ‖ segment number (u64 LE)
//!                                frames: len (u32 LE) ‖ crc32 (u32 LE, of kind ‖ body) ‖ kind (u8) ‖ body
//! ```
//! - [`SegmentLog::append`] writes a group of records with one `pwrite` and one `fdatasync`;
//!   a group that would carry the active segment past its size limit starts a new segment
//!   first, and the directory is `fsync`ed before the append returns, so the new file's name is
//!   as durable as its contents.
//! - [`SegmentLog::open`] checks every header and scans the last segment from a given
//!   position; a torn tail (a frame cut short or failing its CRC, as a crash in the middle of
//!   an append leaves it) is truncated and the truncation synced. A bad frame anywhere before
//!   the tail is corruption, reported, never repaired by cutting.
//! - Frames are read back by [`Location`] with positioned reads; nothing is cached here (the
//!   page cache is the cache).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::StoreError;
use super::durable_fs::{self, io_error};

/// Magic at the start of every segment.
const MAGIC: &[u8; 8] = b"KRNLOG01";
/// Segment header: magic and segment number.
pub const HEADER_LEN: u64 = 16;
/// Frame header: length, CRC, kind.
pub const FRAME_HEADER_LEN: u64 = 9;
/// The largest frame body accepted on reading: anything longer is garbage, not a record.
pub const MAX_BODY: u32 = 64 << 20;
/// Segments are rotated once they reach this size (a group that is larger than this alone is
/// written whole into a fresh segment).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Segment files kept open for reading, at most.
const OPEN_READERS: usize = 8;

/// Where a frame is: segment, offset of its frame header, and its whole length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Segment number.
    pub segment: u64,
    /// Offset of the frame header in the segment.
    pub offset: u64,
    /// Frame length, header included.
    pub len: u32,
}

impl Location {
    /// Encoded length of [`Self::to_bytes`].
    pub const ENCODED_LEN: usize = 20;

    /// Where the next frame starts.
    pub fn end(&self) -> Position {
        Position { segment: self.segment, offset: self.offset + u64::from(self.len) }
    }

    /// segment (u64 BE) ‖ offset (u64 BE) ‖ len (u32 BE).
    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// The inverse of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            len: u32::from_be_bytes(bytes[16..].try_into().ok()?),
        })
    }
}

/// A point in the log: everything before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment number.
    pub segment: u64,
    /// Offset in the segment.
    pub offset: u64,
}

impl Position {
    /// The start of segment 1 (the first frame of an empty log).
    pub const START: Position = Position { segment: 1, offset: HEADER_LEN };

    /// segment (u64 BE) ‖ offset (u64 BE).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    /// The inverse of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        Some(Self {
            segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

/// One record: its kind (a byte the caller defines) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Record kind.
    pub kind: u8,
    /// Record body.
    pub body: Vec<u8>,
}

/// What [`SegmentLog::open`] found at the tail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut off the last segment (a torn append).
    pub truncated_bytes: u64,
    /// Valid frames after the scan position, in order (the caller indexes them again).
    pub frames: Vec<(Location, Frame)>,
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt { tree: "segments", reason }
}

fn segment_name(number: u64) -> String {
    format!("{number:020}.seg")
}

fn frame_crc(kind: u8, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(body);
    hasher.finalize()
}

/// Appends the frame for `kind` and `body` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, kind: u8, body: &[u8]) -> Result<u32, StoreError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_BODY)
        .ok_or_else(|| StoreError::Engine(format!("record of {} bytes is too large", body.len())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_crc(kind, body).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    Ok(len + FRAME_HEADER_LEN as u32)
}

/// The frames at the start of `bytes` (as one append wrote them), up to the first that is
/// incomplete or invalid: for tools that look at what was written (the syscall-order test).
pub fn frames_in(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Ok(Ok(frame)) = read_frame(&mut bytes) {
        frames.push(frame);
    }
    frames
}

/// Reads the frame at the reader's position: `Ok(None)` at a clean end or a torn frame (cut
/// short, or failing its length bound or CRC), with the reason.
fn read_frame(reader: &mut impl Read) -> std::io::Result<Result<Frame, Option<String>>> {
    let mut header = [0u8; FRAME_HEADER_LEN as usize];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..])? {
            0 if filled == 0 => return Ok(Err(None)),
            0 => return Ok(Err(Some(format!("frame header cut short after {filled} bytes")))),
            n => filled += n,
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let kind = header[8];
    if len > MAX_BODY {
        return Ok(Err(Some(format!("frame length {len} out of bounds"))));
    }
    let mut body = Vec::new();
    let read = reader.take(u64::from(len)).read_to_end(&mut body)?;
    if read < len as usize {
        return Ok(Err(Some(format!("frame body cut short: {read} of {len} bytes"))));
    }
    if frame_crc(kind, &body) != crc {
        return Ok(Err(Some("frame fails its CRC".into())));
    }
    Ok(Ok(Frame { kind, body }))
}

/// The append side of a segment directory (one per store; appends are serial).
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    active: File,
    active_number: u64,
    active_len: u64,
    reader: SegmentReader,
}

/// The read side: shared, never waits for an append (only written frames are read).
#[derive(Debug, Clone)]
pub struct SegmentReader {
    dir: PathBuf,
    open: Arc<Mutex<HashMap<u64, Arc<File>>>>,
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir`, checks it and scans it from `scan_from`
    /// (where the caller's index ends): valid frames after it are returned, a torn tail of the
    /// last segment is cut off and the cut synced.
    pub fn open(dir: &Path, segment_bytes: u64, scan_from: Position) -> Result<(Self, Recovery), StoreError> {
        durable_fs::create_private_dir_all(dir)?;
        let mut numbers = Self::segment_numbers(dir)?;
        Self::drop_headerless_last(dir, &mut numbers, scan_from)?;
        let mut recovery = Recovery::default();
        let Some(&last) = numbers.last() else {
            if scan_from != Position::START {
                return Err(corrupt(format!(
                    "the index has entries up to segment {} offset {}, but there is no segment",
                    scan_from.segment, scan_from.offset
                )));
            }
            let log = Self::create_segment(dir, segment_bytes, 1)?;
            return Ok((log, recovery));
        };
        for (expected, number) in (numbers[0]..).zip(&numbers) {
            if expected != *number {
                return Err(corrupt(format!("segment {expected} is missing (found {number})")));
            }
        }
        if scan_from.segment < numbers[0] || scan_from.segment > last {
            return Err(corrupt(format!(
                "the index ends in segment {}, the log holds segments {}..={last}",
                scan_from.segment, numbers[0]
            )));
        }
        let mut active_len = 0;
        for number in scan_from.segment..=last {
            let path = dir.join(segment_name(number));
            let file = Self::open_existing(&path, number)?;
            let size = file.metadata().map_err(|e| io_error(&path, e))?.len();
            let start = if number == scan_from.segment { scan_from.offset } else { HEADER_LEN };
            if start > size {
                return Err(corrupt(format!(
                    "the index ends at offset {start} of segment {number}, which holds {size} bytes"
                )));
            }
            let valid_end = Self::scan(&file, &path, number, start, &mut recovery.frames)?;
            if valid_end < size {
                if number != last {
                    return Err(corrupt(format!(
                        "segment {number} has a bad frame at offset {valid_end} before later segments"
                    )));
                }
                file.set_len(valid_end).map_err(|e| io_error(&path, e))?;
                file.sync_data().map_err(|e| io_error(&path, e))?;
                recovery.truncated_bytes = size - valid_end;
            }
            active_len = valid_end;
        }
        let path = dir.join(segment_name(last));
        let active = Self::open_existing(&path, last)?;
        let log = Self {
            dir: dir.to_owned(),
            segment_bytes,
            active,
            active_number: last,
            active_len,
            reader: SegmentReader::new(dir),
        };
        Ok((log, recovery))
    }

    fn segment_numbers(dir: &Path) -> Result<Vec<u64>, StoreError> {
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            let name = entry.map_err(|e| io_error(dir, e))?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(number) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// A crash while a segment was being created can leave it without its whole header (the
    /// header is written and synced before anything is appended): such a last segment holds
    /// nothing and is removed.
    fn drop_headerless_last(
        dir: &Path,
        numbers: &mut Vec<u64>,
        scan_from: Position,
    ) -> Result<(), StoreError> {
        let Some(&last) = numbers.last() else { return Ok(()) };
        let path = dir.join(segment_name(last));
        let size = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?.len();
        let nothing_indexed_in_it = scan_from.segment < last || (last == 1 && scan_from == Position::START);
        if size >= HEADER_LEN || !nothing_indexed_in_it {
            return Ok(());
        }
        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        durable_fs::sync_dir(dir)?;
        numbers.pop();
        Ok(())
    }

    fn open_existing(path: &Path, number: u64) -> Result<File, StoreError> {
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_error(path, e))?;
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| corrupt(format!("segment {number} has no complete header")))?;
        if &header[..8] != MAGIC || header[8..] != number.to_le_bytes() {
            return Err(corrupt(format!("segment {number} has a foreign header")));
        }
        Ok(file)
    }

    /// Reads frames from `start` to the first bad one or the end; returns where valid data ends.
    fn scan(
        file: &File,
        path: &Path,
        segment: u64,
        start: u64,
        frames: &mut Vec<(Location, Frame)>,
    ) -> Result<u64, StoreError> {
        let mut reader = BufReader::with_capacity(1 << 16, ReadAt { file, offset: start });
        let mut offset = start;
        loop {
            match read_frame(&mut reader).map_err(|e| io_error(path, e))? {
                Ok(frame) => {
                    let len = frame.body.len() as u32 + FRAME_HEADER_LEN as u32;
                    frames.push((Location { segment, offset, len }, frame));
                    offset += u64::from(len);
                }
                Err(_) => return Ok(offset),
            }
        }
    }

    /// Creates segment `number` with its header, durably (file and directory entry).
    fn create_segment(dir: &Path, segment_bytes: u64, number: u64) -> Result<Self, StoreError> {
        let path = dir.join(segment_name(number));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&number.to_le_bytes());
        file.write_all_at(&header, 0).map_err(|e| io_error(&path, e))?;
        file.sync_data().map_err(|e| io_error(&path, e))?;
        durable_fs::sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            segment_bytes,
            active: file,
            active_number: number,
            active_len: HEADER_LEN,
            reader: SegmentReader::new(dir),
        })
    }

    /// Where the next frame will be written.
    pub fn end(&self) -> Position {
        Position { segment: self.active_number, offset: self.active_len }
    }

    /// Appends `frames` (already encoded with [`encode_frame`], `lens` their lengths) in one
    /// write and returns once they are durable (`fdatasync`; on rotation also the directory).
    pub fn append(&mut self, frames: &[u8], lens: &[u32]) -> Result<Vec<Location>, StoreError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let size = frames.len() as u64;
        if self.active_len > HEADER_LEN && self.active_len + size > self.segment_bytes {
            self.rotate()?;
        }
        let path = self.dir.join(segment_name(self.active_number));
        self.active.write_all_at(frames, self.active_len).map_err(|e| io_error(&path, e))?;
        self.active.sync_data().map_err(|e| io_error(&path, e))?;
        let mut offset = self.active_len;
        let locations = lens
            .iter()
            .map(|len| {
                let location = Location { segment: self.active_number, offset, len: *len };
                offset += u64::from(*len);
                location
            })
            .collect();
        self.active_len += size;
        Ok(locations)
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        let next = Self::create_segment(&self.dir, self.segment_bytes, self.active_number + 1)?;
        self.active = next.active;
        self.active_number = next.active_number;
        self.active_len = next.active_len;
        Ok(())
    }

    /// The read side of this log.
    pub fn reader(&self) -> SegmentReader {
        self.reader.clone()
    }

    /// The path of segment `number` (for diagnostics and tests).
    pub fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_name(number))
    }
}

impl SegmentReader {
    fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), open: Arc::new(Mutex::new(HashMap::new())) }
    }

    fn file(&self, segment: u64) -> Result<Arc<File>, StoreError> {
        let mut readers = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = readers.get(&segment) {
            return Ok(file.clone());
        }
        let path = self.dir.join(segment_name(segment));
        let file = Arc::new(File::open(&path).map_err(|e| io_error(&path, e))?);
        if readers.len() >= OPEN_READERS {
            readers.clear();
        }
        readers.insert(segment, file.clone());
        Ok(file)
    }

    /// Reads the frame at `location` (its CRC checked).
    pub fn read(&self, location: Location) -> Result<Frame, StoreError> {
        let file = self.file(location.segment)?;
        let mut bytes = vec![0u8; location.len as usize];
        file.read_exact_at(&mut bytes, location.offset).map_err(|e| {
            corrupt(format!("frame at segment {} offset {}: {e}", location.segment, location.offset))
        })?;
        match read_frame(&mut bytes.as_slice()) {
            Ok(Ok(frame)) if frame.body.len() as u64 + FRAME_HEADER_LEN == u64::from(location.len) => {
                Ok(frame)
            }
            Ok(Ok(_)) => Err(corrupt(format!(
                "frame at segment {} offset {} has another length than indexed",
                location.segment, location.offset
            ))),
            Ok(Err(reason)) => Err(corrupt(format!(
                "frame at segment {} offset {}: {}",
                location.segment,
                location.offset,
                reason.unwrap_or_else(|| "empty".into())
            ))),
            Err(e) => Err(corrupt(e.to_string())),
        }
    }
}

/// Sequential reads through positioned reads (the log's files are shared with writers).
struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> (Vec<u8>, Vec<u32>) {
        let mut out = Vec::new();
        let lens = bodies.iter().map(|b| encode_frame(&mut out, 1, b).expect("encode")).collect();
        (out, lens)
    }

    #[test]
    fn appended_frames_read_back_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, recovery) = SegmentLog::open(dir.path(), 1 << 20, Position::START).expect("open");
        assert_eq!(recovery, Recovery::default());
        let (bytes, lens) = frames(&[b"one", b"two"]);
        assert_eq!(frames_in(&bytes).len(), 2);
        let locations = log.append(&bytes, &lens).expect("append");
        assert_eq!(log.reader().read(locations[1]).expect("read").body, b"two");
        let end = log.end();
        drop(log);
        let (log, recovery) = SegmentLog::open(dir.path(), 1 << 20, Position::START).expect("reopen");
        assert_eq!(recovery.frames.len(), 2, "scanned from the start");
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(log.end(), end);
        let (_, recovery) = SegmentLog::open(dir.path(), 1 << 20, end).expect("reopen at end");
        assert!(recovery.frames.is_empty());
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_bad_frame_before_the_tail_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20, Position::START).expect("open");
        let (bytes, lens) = frames(&[b"kept"]);
        let kept = log.append(&bytes, &lens).expect("append")[0];
        let path = log.segment_path(1);
        drop(log);
        // A crash in the middle of the next append: half a frame.
        let (torn, _) = frames(&[b"torn record"]);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&torn[..7], kept.end().offset).expect("write");
        drop(file);
        let (log, recovery) = SegmentLog::open(dir.path(), 1 << 20, Position::START).expect("reopen");
        assert_eq!(recovery.truncated_bytes, 7);
        assert_eq!(recovery.frames.len(), 1);
        assert_eq!(log.end(), kept.end());
        drop(log);
        // A flipped byte inside a frame of a segment that is not the last: refused.
        let (mut log, _) = SegmentLog::open(dir.path(), 1, kept.end()).expect("reopen");
        let (bytes, lens) = frames(&[b"in segment two"]);
        assert_eq!(log.append(&bytes, &lens).expect("append")[0].segment, 2, "rotated");
        drop(log);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(b"X", kept.offset + FRAME_HEADER_LEN).expect("write");
        drop(file);
        let error = SegmentLog::open(dir.path(), 1, Position::START).expect_err("corrupt");
        assert!(error.to_string().contains("segment 1 has a bad frame"), "{error}");
    }

    #[test]
    fn an_index_past_the_log_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SegmentLog::open(dir.path(), 1 << 20, Position::START).expect("open"));
        let error = SegmentLog::open(dir.path(), 1 << 20, Position { segment: 1, offset: 4096 })
            .expect_err("index beyond the data");
        assert!(error.to_string().contains("holds 16 bytes"), "{error}");
        let error =
            SegmentLog::open(dir.path(), 1 << 20, Position { segment: 3, offset: 16 }).expect_err("no such");
        assert!(error.to_string().contains("segments 1..=1"), "{error}");
    }

    #[test]
    fn locations_and_positions_round_trip() {
        let location = Location { segment: 3, offset: 1 << 40, len: 77 };
        assert_eq!(Location::from_bytes(&location.to_bytes()), Some(location));
        let position = location.end();
        assert_eq!(Position::from_bytes(&position.to_bytes()), Some(position));
        assert_eq!(Location::from_bytes(&[0; 3]), None);
    }
}
