//! tritlab-morphism: the on-disk log of a training run, one record per optimiser step, each a
//! morphism from the world (model state) before the step to the world after it.
//!
//! A record holds the step's scalars (learning rate, loss, gradient norm), the batch's content
//! hash and position in the data stream, the RNG state, blake3 hashes of the world before and
//! after, and per ternary layer the exact set of trit flips with their old and new trits. Because
//! every flip stores both trits, the ternary weights at any step can be rebuilt from any
//! checkpoint by replaying records forward ([`TritFlips::apply_forward`]) or backward
//! ([`TritFlips::apply_backward`]), and replay detects a record applied to the wrong world.
//!
//! The log is append-only and crash-tolerant: a record torn by a crash is detected and dropped
//! (reported as [`TailStatus::Torn`]), everything before it stays readable, and
//! [`MorphismLogWriter::open_append`] cuts the torn tail before continuing. Corruption anywhere
//! else is an error naming the file, the record's index and its byte offset.
//!
//! ```
//! use tritlab_morphism::{ContentHash, LayerMorphism, MorphismLogReader, MorphismLogWriter,
//!                        StepRecord, TailStatus};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("morphisms.tml");
//! let before = [0i8, 1, -1, 0];
//! let after = [1i8, 1, -1, -1];
//! let record = StepRecord {
//!     step: 1,
//!     learning_rate: 1e-3,
//!     loss: 2.5,
//!     grad_norm: 0.7,
//!     batch_hash: ContentHash::of_bytes(b"batch tokens"),
//!     batch_position: 4096,
//!     rng_state: 42u64.to_le_bytes().to_vec(),
//!     world_before: ContentHash::of_bytes(b"world 0"),
//!     world_after: ContentHash::of_bytes(b"world 1"),
//!     layers: vec![LayerMorphism::between("layer.0", &before, 0.5, &after, 0.5).unwrap()],
//! };
//! let mut writer = MorphismLogWriter::create(&path).unwrap();
//! writer.append(&record).unwrap();
//! writer.sync().unwrap();
//!
//! let (records, tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
//! assert_eq!(records, [record]);
//! assert_eq!(tail, TailStatus::Clean);
//! let mut world = before;
//! records[0].layers[0].flips.apply_forward(&mut world).unwrap();
//! assert_eq!(world, after);
//! ```
//!
//! # Format (version 1)
//!
//! All integers are little-endian. A *varint* is an unsigned LEB128 u64: 7 bits per byte, low
//! bits first, the high bit set on every byte but the last, at most 10 bytes.
//!
//! File header, 16 bytes:
//!
//! | offset | size | field                                            |
//! |--------|------|--------------------------------------------------|
//! | 0      | 8    | magic `TRITMLOG` (ASCII)                         |
//! | 8      | 4    | format version, u32 (1)                          |
//! | 12     | 4    | flags, u32, must be 0 in version 1               |
//!
//! Then records back to back. Each record is a 12-byte frame header and a payload:
//!
//! | offset | size | field                                            |
//! |--------|------|--------------------------------------------------|
//! | 0      | 4    | payload length in bytes, u32                     |
//! | 4      | 4    | crc32 (IEEE) of the payload                      |
//! | 8      | 4    | crc32 of frame bytes 0..8                        |
//! | 12     | len  | payload                                          |
//!
//! Payload, in order:
//!
//! 1. `step`: varint
//! 2. `learning_rate`, `loss`, `grad_norm`: f64 each (24 bytes)
//! 3. `batch_hash`: 32 bytes; `batch_position`: varint
//! 4. `rng_state`: varint length, then that many bytes
//! 5. `world_before`, `world_after`: 32 bytes each (blake3 digests)
//! 6. layer count: varint; then per layer:
//!    1. name: varint length, then UTF-8 bytes
//!    2. `scale_before`, `scale_after`: f32 each
//!    3. transition matrix: 9 varints, row-major, `counts[old+1][new+1]` with old and new
//!       running -1, 0, +1. The sum is the tensor's length; row sums are the trit counts
//!       before, column sums the counts after. Counts and GF(3) sums are derived, not stored.
//!    4. flip positions: as many varints as the matrix's off-diagonal sum; the first is the
//!       position, each next one is `position - previous - 1` (positions strictly increase)
//!    5. flip codes: one nibble per flip, `3·(old+1) + (new+1)` (1, 2, 3, 5, 6 or 7), flip `i`
//!       in byte `i/2`, low nibble for even `i`; the unused high nibble of an odd count is 0.
//!
//! The payload must be consumed exactly. A reader classifies the end of the file as follows:
//! fewer than 12 bytes left for a frame header, or a valid frame header whose payload runs past
//! the end, is a *torn tail* (dropped and reported); a frame header or payload whose checksum
//! fails, or a payload that does not decode, is *corruption* (an error). The frame header's own
//! checksum is what keeps a corrupt length in the middle of a log from passing for a torn tail.

mod codec;
mod flips;
mod log;
mod record;

pub use codec::{decode_payload, encode_payload, DecodeError};
pub use flips::{FlipError, TensorSide, TransitionMatrix, TritFlip, TritFlips, TRITS};
pub use log::{
    LogError, LoggedRecord, MorphismLogReader, MorphismLogWriter, RecordPosition, RecordProblem,
    TailStatus, FILE_HEADER_LEN, FORMAT_VERSION, FRAME_HEADER_LEN, MAGIC,
};
pub use record::{ContentHash, LayerMorphism, StepRecord};
pub use tritlab_kernels::trit::TritCounts;
