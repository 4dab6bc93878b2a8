//! The morphism log reader and payload codec (`host/morphism`).
//!
//! Input: a whole log file. The fuzz target's custom mutator repairs the file header and every frame's two
//! checksums after libFuzzer mutates the bytes, so most mutations reach the payload decoder
//! instead of stopping at a checksum mismatch; one mutation in eight is left unrepaired so the
//! checksum and header paths stay covered.
//!
//! Properties: every accepted record re-encodes to a payload that decodes to the same record; a
//! log written from the accepted records reads back identically with a clean tail; cutting a torn
//! tail (as `open_append` does) leaves the same records and a clean end; every layer's flips
//! applied forward then backward give back the tensor they started from.

use crate::scratch_path;
use tritlab_morphism::{
    decode_payload, encode_payload, MorphismLogReader, MorphismLogWriter, StepRecord, TailStatus,
    FILE_HEADER_LEN, FORMAT_VERSION, FRAME_HEADER_LEN, MAGIC,
};

/// Largest tensor the flip check materialises.
const MAX_TENSOR: u64 = 1 << 16;

/// Rewrites the file header and every frame's length and checksums so that mutated bytes reach
/// the payload decoder. `seed` picks the exceptions: one in sixteen keeps a mutated header, and
/// one in four keeps a torn last record.
pub fn repair(data: &mut [u8], seed: u32) {
    let header = FILE_HEADER_LEN as usize;
    if data.len() >= header && !seed.is_multiple_of(16) {
        data[..8].copy_from_slice(&MAGIC);
        data[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        data[12..16].copy_from_slice(&0u32.to_le_bytes());
    }
    let mut at = header;
    let frame = FRAME_HEADER_LEN as usize;
    while at + frame <= data.len() {
        let mut len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let room = data.len() - at - frame;
        // Keep a torn last record now and then; otherwise make the length fit.
        if len > room && !(seed >> 4).is_multiple_of(4) {
            len = room;
            data[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        }
        if len <= room {
            let crc = crc32fast::hash(&data[at + frame..at + frame + len]);
            data[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        }
        let header_crc = crc32fast::hash(&data[at..at + 8]);
        data[at + 8..at + 12].copy_from_slice(&header_crc.to_le_bytes());
        at += frame + len;
    }
}

fn check_record(record: &StepRecord) {
    let bytes = encode_payload(record);
    let again = decode_payload(&bytes).expect("a re-encoded record decodes");
    // Bytes, not `==`: a NaN loss is a valid record that is not equal to itself.
    assert_eq!(
        encode_payload(&again),
        bytes,
        "encode ∘ decode is not the identity"
    );
    for layer in &record.layers {
        let flips = &layer.flips;
        if flips.len() > MAX_TENSOR {
            continue;
        }
        let mut before = vec![0i8; flips.len() as usize];
        for flip in flips.flips() {
            before[flip.position as usize] = flip.old;
        }
        let mut tensor = before.clone();
        flips
            .apply_forward(&mut tensor)
            .expect("forward onto a matching tensor");
        for flip in flips.flips() {
            assert_eq!(tensor[flip.position as usize], flip.new);
        }
        flips
            .apply_backward(&mut tensor)
            .expect("backward onto a matching tensor");
        assert_eq!(tensor, before, "forward then backward is not the identity");
    }
}

pub fn run(data: &[u8]) {
    // The payload decoder on its own, on the raw bytes.
    if let Ok(record) = decode_payload(data) {
        check_record(&record);
    }

    let path = scratch_path("input.tml");
    std::fs::write(&path, data).unwrap();
    let Ok(reader) = MorphismLogReader::open(&path) else {
        return;
    };
    let Ok((records, tail)) = reader.read_all() else {
        return;
    };
    for record in &records {
        check_record(record);
    }

    // Written again from what was read, the log reads back the same, cleanly.
    let copy = scratch_path("copy.tml");
    let _ = std::fs::remove_file(&copy);
    let mut writer = MorphismLogWriter::create(&copy).unwrap();
    for record in &records {
        writer.append(record).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let (again, again_tail) = MorphismLogReader::open(&copy).unwrap().read_all().unwrap();
    assert_eq!(again_tail, TailStatus::Clean);
    let encoded = |rs: &[StepRecord]| rs.iter().map(encode_payload).collect::<Vec<_>>();
    assert_eq!(
        encoded(&again),
        encoded(&records),
        "written log reads back differently"
    );

    // A torn tail is what `open_append` cuts; afterwards the log ends cleanly.
    if let TailStatus::Torn {
        offset,
        dropped_bytes,
    } = tail
    {
        assert_eq!(
            offset + dropped_bytes,
            data.len() as u64,
            "torn tail does not reach the end"
        );
        let writer = MorphismLogWriter::open_append(&path).expect("open_append after a torn tail");
        assert_eq!(writer.dropped_tail_bytes(), dropped_bytes);
        assert_eq!(writer.next_index(), records.len() as u64);
        drop(writer);
        let (cut, cut_tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
        assert_eq!(cut_tail, TailStatus::Clean);
        assert_eq!(encoded(&cut), encoded(&records));
    }
}
