//! The append-only log file: a header, then checksummed, length-prefixed records.
//!
//! Each record's frame carries its own checksum as well as the payload's, so a corrupt length
//! field is reported as corruption instead of being mistaken for a torn tail (which would
//! silently drop every record after it).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::codec::{decode_payload, encode_payload, DecodeError};
use crate::record::StepRecord;

/// The first eight bytes of every morphism log.
pub const MAGIC: [u8; 8] = *b"TRITMLOG";
/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes in the file header: magic, version (u32 LE), flags (u32 LE, zero in version 1).
pub const FILE_HEADER_LEN: u64 = 16;
/// Bytes in a record's frame header: payload length, payload crc32, frame crc32 (all u32 LE).
pub const FRAME_HEADER_LEN: u64 = 12;

/// Errors reading or writing a morphism log; each names the file, and those about a record name
/// its index (0-based) and the byte offset of its frame.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error(
        "{}: truncated file header: {len} bytes, but a morphism log starts with a {FILE_HEADER_LEN}-byte header",
        .path.display()
    )]
    TruncatedHeader { path: PathBuf, len: u64 },
    #[error(
        "{}: not a tritlab morphism log: the file starts with {found:02x?}, expected {MAGIC:02x?} (\"TRITMLOG\")",
        .path.display()
    )]
    BadMagic { path: PathBuf, found: [u8; 8] },
    #[error(
        "{}: morphism log format version {found} is not supported: this build reads version {supported}",
        .path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{}: header flags {flags:#010x} are not defined in format version {FORMAT_VERSION}", .path.display())]
    UnknownFlags { path: PathBuf, flags: u32 },
    #[error("{}: record {index} at byte offset {offset} is corrupt: {problem}", .path.display())]
    CorruptRecord {
        path: PathBuf,
        index: u64,
        offset: u64,
        problem: RecordProblem,
    },
    #[error(
        "{}: the record for step {step} encodes to {len} bytes, more than a frame's u32 length holds",
        .path.display()
    )]
    RecordTooLarge {
        path: PathBuf,
        step: u64,
        len: usize,
    },
    #[error(
        "{}: an earlier write failed, so the file's end is unknown; reopen it with open_append",
        .path.display()
    )]
    WriterFailed { path: PathBuf },
}

/// What is wrong with a corrupt record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordProblem {
    #[error("frame header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    FrameChecksum { stored: u32, computed: u32 },
    #[error("payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    PayloadChecksum { stored: u32, computed: u32 },
    #[error("payload does not decode: {0}")]
    Decode(#[from] DecodeError),
}

/// How the log ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailStatus {
    /// The last record ends exactly at the end of the file.
    Clean,
    /// The last record was cut short (a crash mid-append): its bytes, from `offset` to the end
    /// of the file, were ignored. Everything before `offset` is intact.
    Torn { offset: u64, dropped_bytes: u64 },
}

/// A record as read back, with where it sits in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRecord {
    /// 0-based position of the record in the log.
    pub index: u64,
    /// Byte offset of the record's frame header from the start of the file.
    pub offset: u64,
    pub record: StepRecord,
}

/// Where an appended record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    pub index: u64,
    pub offset: u64,
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn file_header() -> [u8; FILE_HEADER_LEN as usize] {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Bytes 12..16: flags, none defined in version 1.
    header
}

fn frame_header(payload: &[u8]) -> Option<[u8; FRAME_HEADER_LEN as usize]> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut frame = [0u8; FRAME_HEADER_LEN as usize];
    frame[0..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let frame_crc = crc32fast::hash(&frame[0..8]);
    frame[8..12].copy_from_slice(&frame_crc.to_le_bytes());
    Some(frame)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads a morphism log record by record, streaming, so logs larger than memory can be replayed.
///
/// The file's length is taken once at open: a record still being appended by a concurrent writer
/// is seen as a torn tail, never as corruption.
pub struct MorphismLogReader {
    path: PathBuf,
    file: BufReader<File>,
    file_len: u64,
    offset: u64,
    next_index: u64,
    tail: Option<TailStatus>,
    failed: bool,
}

impl MorphismLogReader {
    /// Opens a log and checks its header: magic, version and flags.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(io_error(&path, "cannot open the morphism log"))?;
        let file_len = file
            .metadata()
            .map_err(io_error(&path, "cannot read the file's length"))?
            .len();
        let mut file = BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; FILE_HEADER_LEN as usize];
        let available = file_len.min(FILE_HEADER_LEN) as usize;
        file.read_exact(&mut header[..available])
            .map_err(io_error(&path, "cannot read the file header"))?;
        // A short file whose bytes differ from the magic is foreign, not a truncated log.
        if header[..available.min(8)] != MAGIC[..available.min(8)] {
            let mut found = [0u8; 8];
            found[..available.min(8)].copy_from_slice(&header[..available.min(8)]);
            return Err(LogError::BadMagic { path, found });
        }
        if file_len < FILE_HEADER_LEN {
            return Err(LogError::TruncatedHeader {
                path,
                len: file_len,
            });
        }
        let version = u32_at(&header, 8);
        if version != FORMAT_VERSION {
            return Err(LogError::UnsupportedVersion {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = u32_at(&header, 12);
        if flags != 0 {
            return Err(LogError::UnknownFlags { path, flags });
        }
        Ok(MorphismLogReader {
            path,
            file,
            file_len,
            offset: FILE_HEADER_LEN,
            next_index: 0,
            tail: None,
            failed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the log ends; `None` until the last record has been read.
    pub fn tail_status(&self) -> Option<TailStatus> {
        self.tail
    }

    /// Reads the next record, `Ok(None)` at the end of the log (clean or torn: see
    /// [`tail_status`](Self::tail_status)).
    pub fn next_record(&mut self) -> Result<Option<LoggedRecord>, LogError> {
        if self.tail.is_some() || self.failed {
            return Ok(None);
        }
        let result = self.read_record();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn read_record(&mut self) -> Result<Option<LoggedRecord>, LogError> {
        let (index, offset) = (self.next_index, self.offset);
        let remaining = self.file_len - offset;
        if remaining == 0 {
            self.tail = Some(TailStatus::Clean);
            return Ok(None);
        }
        let torn = TailStatus::Torn {
            offset,
            dropped_bytes: remaining,
        };
        if remaining < FRAME_HEADER_LEN {
            self.tail = Some(torn);
            return Ok(None);
        }
        let corrupt = |path: &Path, problem: RecordProblem| LogError::CorruptRecord {
            path: path.to_path_buf(),
            index,
            offset,
            problem,
        };
        let mut frame = [0u8; FRAME_HEADER_LEN as usize];
        self.file
            .read_exact(&mut frame)
            .map_err(io_error(&self.path, "cannot read a record's frame header"))?;
        let (len, payload_crc, frame_crc) =
            (u32_at(&frame, 0), u32_at(&frame, 4), u32_at(&frame, 8));
        let computed = crc32fast::hash(&frame[0..8]);
        if computed != frame_crc {
            return Err(corrupt(
                &self.path,
                RecordProblem::FrameChecksum {
                    stored: frame_crc,
                    computed,
                },
            ));
        }
        if u64::from(len) > remaining - FRAME_HEADER_LEN {
            self.tail = Some(torn);
            return Ok(None);
        }
        // Bounded by the file's length, checked just above.
        let mut payload = vec![0u8; len as usize];
        self.file
            .read_exact(&mut payload)
            .map_err(io_error(&self.path, "cannot read a record's payload"))?;
        let computed = crc32fast::hash(&payload);
        if computed != payload_crc {
            return Err(corrupt(
                &self.path,
                RecordProblem::PayloadChecksum {
                    stored: payload_crc,
                    computed,
                },
            ));
        }
        let record =
            decode_payload(&payload).map_err(|e| corrupt(&self.path, RecordProblem::Decode(e)))?;
        self.offset += FRAME_HEADER_LEN + u64::from(len);
        self.next_index += 1;
        Ok(Some(LoggedRecord {
            index,
            offset,
            record,
        }))
    }

    /// Reads every remaining record. A torn tail is reported, not an error; corruption is.
    pub fn read_all(mut self) -> Result<(Vec<StepRecord>, TailStatus), LogError> {
        let mut records = Vec::new();
        while let Some(logged) = self.next_record()? {
            records.push(logged.record);
        }
        Ok((records, self.tail.unwrap_or(TailStatus::Clean)))
    }
}

impl Iterator for MorphismLogReader {
    type Item = Result<LoggedRecord, LogError>;

    /// Yields records until the end of the log; after an error it yields nothing more.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Appends step records to a morphism log.
///
/// Records are buffered; [`flush`](Self::flush) hands them to the OS and [`sync`](Self::sync)
/// makes them durable. A crash loses at most the records since the last sync, and leaves at most
/// one torn record, which [`open_append`](Self::open_append) and the reader both drop.
pub struct MorphismLogWriter {
    path: PathBuf,
    file: BufWriter<File>,
    next_index: u64,
    offset: u64,
    dropped_tail_bytes: u64,
    failed: bool,
}

impl MorphismLogWriter {
    /// Creates a new, empty log and syncs its header. Fails if the file already exists, so a
    /// run's history is never overwritten by accident.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path, "cannot create the morphism log"))?;
        let mut writer = MorphismLogWriter {
            path,
            file: BufWriter::with_capacity(1 << 20, file),
            next_index: 0,
            offset: FILE_HEADER_LEN,
            dropped_tail_bytes: 0,
            failed: false,
        };
        writer.write_bytes(&file_header())?;
        writer.sync()?;
        Ok(writer)
    }

    /// Opens an existing log to append to it. Every record is read and checked first; a torn
    /// tail is cut off (and the cut synced) so new records follow the last intact one, and its
    /// size is reported by [`dropped_tail_bytes`](Self::dropped_tail_bytes). Corruption before
    /// the tail is an error: appending after it would bury it.
    pub fn open_append(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let mut reader = MorphismLogReader::open(&path)?;
        let mut next_index = 0;
        while let Some(logged) = reader.next_record()? {
            next_index = logged.index + 1;
        }
        let (end, dropped_tail_bytes) = match reader.tail_status() {
            Some(TailStatus::Torn {
                offset,
                dropped_bytes,
            }) => (offset, dropped_bytes),
            _ => (reader.offset, 0),
        };
        drop(reader);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_error(
                &path,
                "cannot open the morphism log for appending",
            ))?;
        if dropped_tail_bytes > 0 {
            file.set_len(end)
                .map_err(io_error(&path, "cannot cut off the torn last record"))?;
            file.sync_all()
                .map_err(io_error(&path, "cannot sync the cut-off torn record"))?;
        }
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(end))
            .map_err(io_error(&path, "cannot seek to the end of the log"))?;
        Ok(MorphismLogWriter {
            path,
            file: BufWriter::with_capacity(1 << 20, file),
            next_index,
            offset: end,
            dropped_tail_bytes,
            failed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index the next appended record will get (the number of records in the log).
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Bytes of a torn last record that [`open_append`](Self::open_append) cut off (0 if none).
    pub fn dropped_tail_bytes(&self) -> u64 {
        self.dropped_tail_bytes
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::WriterFailed {
                path: self.path.clone(),
            });
        }
        self.file.write_all(bytes).map_err(|source| {
            self.failed = true;
            LogError::Io {
                path: self.path.clone(),
                action: "cannot write to the morphism log",
                source,
            }
        })
    }

    /// Appends one record (buffered). After any write error the writer refuses further records,
    /// since the file may end in a partial record; reopen with `open_append` to recover.
    pub fn append(&mut self, record: &StepRecord) -> Result<RecordPosition, LogError> {
        let payload = encode_payload(record);
        let frame = frame_header(&payload).ok_or_else(|| LogError::RecordTooLarge {
            path: self.path.clone(),
            step: record.step,
            len: payload.len(),
        })?;
        let position = RecordPosition {
            index: self.next_index,
            offset: self.offset,
        };
        self.write_bytes(&frame)?;
        self.write_bytes(&payload)?;
        self.offset += FRAME_HEADER_LEN + payload.len() as u64;
        self.next_index += 1;
        Ok(position)
    }

    /// Hands buffered records to the operating system (they survive a crash of this process,
    /// not of the machine).
    pub fn flush(&mut self) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::WriterFailed {
                path: self.path.clone(),
            });
        }
        self.file.flush().map_err(|source| {
            self.failed = true;
            LogError::Io {
                path: self.path.clone(),
                action: "cannot flush the morphism log",
                source,
            }
        })
    }

    /// Flushes and fsyncs, so every appended record survives a power loss.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.file.get_ref().sync_data().map_err(|source| {
            self.failed = true;
            LogError::Io {
                path: self.path.clone(),
                action: "cannot sync the morphism log",
                source,
            }
        })
    }
}
