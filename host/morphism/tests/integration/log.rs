//! The log file: round trips, torn tails at every byte, corruption, foreign files, versions.

use crate::common;

use std::fs;
use std::path::Path;

use common::sample_record;
use tritlab_morphism::{
    LogError, MorphismLogReader, MorphismLogWriter, RecordProblem, StepRecord, TailStatus,
    FILE_HEADER_LEN, FORMAT_VERSION, MAGIC,
};

/// Writes `count` sample records and returns them with each record's byte offset.
fn write_log(path: &Path, count: u64) -> (Vec<StepRecord>, Vec<u64>) {
    let records: Vec<StepRecord> = (0..count).map(|step| sample_record(step, 50)).collect();
    let mut writer = MorphismLogWriter::create(path).unwrap();
    let mut offsets = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let position = writer.append(record).unwrap();
        assert_eq!(position.index, index as u64);
        offsets.push(position.offset);
    }
    writer.sync().unwrap();
    (records, offsets)
}

#[test]
fn written_records_read_back_equal_with_indices_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.tml");
    let (records, offsets) = write_log(&path, 12);
    assert_eq!(offsets[0], FILE_HEADER_LEN);

    let logged: Vec<_> = MorphismLogReader::open(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(logged.len(), records.len());
    for (i, entry) in logged.iter().enumerate() {
        assert_eq!(entry.index, i as u64);
        assert_eq!(entry.offset, offsets[i]);
        assert_eq!(entry.record, records[i]);
    }
    let (read, tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
    assert_eq!(read, records);
    assert_eq!(tail, TailStatus::Clean);
}

#[test]
fn an_empty_log_reads_as_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.tml");
    drop(MorphismLogWriter::create(&path).unwrap());
    assert_eq!(fs::metadata(&path).unwrap().len(), FILE_HEADER_LEN);
    let (records, tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
    assert!(records.is_empty());
    assert_eq!(tail, TailStatus::Clean);
}

#[test]
fn create_refuses_to_overwrite_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.tml");
    write_log(&path, 1);
    let error = MorphismLogWriter::create(&path).err().unwrap();
    assert!(matches!(error, LogError::Io { .. }));
    assert!(error.to_string().contains("run.tml"), "{error}");
    assert_eq!(
        MorphismLogReader::open(&path)
            .unwrap()
            .read_all()
            .unwrap()
            .0
            .len(),
        1
    );
}

#[test]
fn a_tail_torn_at_any_byte_drops_only_the_last_record_and_append_continues() {
    let dir = tempfile::tempdir().unwrap();
    let full_path = dir.path().join("full.tml");
    let (records, offsets) = write_log(&full_path, 4);
    let bytes = fs::read(&full_path).unwrap();
    let last = *offsets.last().unwrap();
    for cut in last..bytes.len() as u64 {
        let path = dir.path().join(format!("cut-{cut}.tml"));
        fs::write(&path, &bytes[..cut as usize]).unwrap();

        let (read, tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
        assert_eq!(read, records[..3], "cut at {cut}");
        let expected_tail = if cut == last {
            TailStatus::Clean
        } else {
            TailStatus::Torn {
                offset: last,
                dropped_bytes: cut - last,
            }
        };
        assert_eq!(tail, expected_tail, "cut at {cut}");

        let mut writer = MorphismLogWriter::open_append(&path).unwrap();
        assert_eq!(writer.dropped_tail_bytes(), cut - last);
        assert_eq!(writer.next_index(), 3);
        let next = sample_record(99, 7);
        let position = writer.append(&next).unwrap();
        assert_eq!((position.index, position.offset), (3, last));
        writer.sync().unwrap();
        drop(writer);

        let (read, tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
        assert_eq!(tail, TailStatus::Clean, "cut at {cut}");
        assert_eq!(read.len(), 4);
        assert_eq!(read[..3], records[..3]);
        assert_eq!(read[3], next);
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn open_append_on_a_clean_log_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.tml");
    let (mut records, _) = write_log(&path, 3);
    let mut writer = MorphismLogWriter::open_append(&path).unwrap();
    assert_eq!(writer.dropped_tail_bytes(), 0);
    assert_eq!(writer.next_index(), 3);
    for step in 3..5 {
        records.push(sample_record(step, 9));
        writer.append(records.last().unwrap()).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let (read, tail) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
    assert_eq!(read, records);
    assert_eq!(tail, TailStatus::Clean);
}

#[test]
fn any_flipped_bit_in_a_middle_record_is_an_error_naming_file_index_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.tml");
    let (_, offsets) = write_log(&good_path, 3);
    let bytes = fs::read(&good_path).unwrap();
    let path = dir.path().join("corrupt.tml");
    let (start, end) = (offsets[1], offsets[2]);
    for at in start..end {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[at as usize] ^= mask;
            fs::write(&path, &corrupt).unwrap();

            let mut reader = MorphismLogReader::open(&path).unwrap();
            assert!(reader.next().unwrap().is_ok(), "record 0 is intact");
            let error = reader.next().unwrap().unwrap_err();
            match &error {
                LogError::CorruptRecord {
                    index,
                    offset,
                    problem,
                    ..
                } => {
                    assert_eq!((*index, *offset), (1, start), "byte {at} ^ {mask:#x}");
                    let in_frame = at < start + 12;
                    assert_eq!(
                        matches!(problem, RecordProblem::FrameChecksum { .. }),
                        in_frame,
                        "byte {at}: {problem}"
                    );
                }
                other => panic!("byte {at} ^ {mask:#x}: unexpected {other}"),
            }
            let message = error.to_string();
            assert!(message.contains("corrupt.tml"), "{message}");
            assert!(message.contains("record 1"), "{message}");
            assert!(
                message.contains(&format!("byte offset {start}")),
                "{message}"
            );
            // After an error the iterator ends instead of guessing where the next record starts.
            assert!(reader.next().is_none());

            assert!(matches!(
                MorphismLogReader::open(&path).unwrap().read_all(),
                Err(LogError::CorruptRecord { index: 1, .. })
            ));
            // Appending after corruption would bury it, so open_append refuses.
            assert!(matches!(
                MorphismLogWriter::open_append(&path),
                Err(LogError::CorruptRecord { index: 1, .. })
            ));
        }
    }
}

#[test]
fn a_payload_that_checks_out_but_does_not_decode_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-payload.tml");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let payload = [0x80u8; 3]; // an unfinished varint
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let frame_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&frame_crc.to_le_bytes());
    bytes.extend_from_slice(&frame);
    bytes.extend_from_slice(&payload);
    fs::write(&path, &bytes).unwrap();
    let error = MorphismLogReader::open(&path)
        .unwrap()
        .read_all()
        .unwrap_err();
    assert!(
        matches!(
            error,
            LogError::CorruptRecord {
                index: 0,
                offset: 16,
                problem: RecordProblem::Decode(_),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn foreign_files_truncated_headers_and_future_versions_are_rejected_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.bin");

    fs::write(&path, b"{\"this\": \"is json, not a morphism log\"}").unwrap();
    let error = MorphismLogReader::open(&path).err().unwrap();
    assert!(matches!(error, LogError::BadMagic { .. }), "{error}");
    assert!(error.to_string().contains("other.bin"), "{error}");
    assert!(
        error.to_string().contains("not a tritlab morphism log"),
        "{error}"
    );

    fs::write(&path, b"PK").unwrap();
    assert!(matches!(
        MorphismLogReader::open(&path),
        Err(LogError::BadMagic { .. })
    ));

    for len in [0usize, 3, 8, 15] {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&[0; 4]);
        fs::write(&path, &header[..len]).unwrap();
        let error = MorphismLogReader::open(&path).err().unwrap();
        assert!(
            matches!(error, LogError::TruncatedHeader { len: l, .. } if l == len as u64),
            "{error}"
        );
        assert!(
            error.to_string().contains("truncated file header"),
            "{error}"
        );
        assert!(MorphismLogWriter::open_append(&path).is_err());
    }

    let mut future = MAGIC.to_vec();
    future.extend_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    future.extend_from_slice(&[0; 4]);
    fs::write(&path, &future).unwrap();
    let error = MorphismLogReader::open(&path).err().unwrap();
    let message = error.to_string();
    assert!(matches!(
        error,
        LogError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert!(
        message.contains("version 2") && message.contains("version 1"),
        "{message}"
    );
    assert!(matches!(
        MorphismLogWriter::open_append(&path),
        Err(LogError::UnsupportedVersion { .. })
    ));

    let mut flagged = MAGIC.to_vec();
    flagged.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    flagged.extend_from_slice(&1u32.to_le_bytes());
    fs::write(&path, &flagged).unwrap();
    assert!(matches!(
        MorphismLogReader::open(&path),
        Err(LogError::UnknownFlags { flags: 1, .. })
    ));

    let missing = dir.path().join("missing.tml");
    let error = MorphismLogReader::open(&missing).err().unwrap();
    assert!(matches!(error, LogError::Io { .. }));
    assert!(error.to_string().contains("missing.tml"), "{error}");
}

#[test]
fn replaying_the_log_rebuilds_every_world_forward_and_backward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.tml");
    let mut rng = common::SampleRng::new(7);
    let mut world: Vec<i8> = (0..500).map(|_| rng.trit()).collect();
    let mut worlds = vec![world.clone()];
    let mut writer = MorphismLogWriter::create(&path).unwrap();
    for step in 0..20u64 {
        let next: Vec<i8> = world
            .iter()
            .map(|&t| {
                if rng.next_u64().is_multiple_of(10) {
                    rng.trit()
                } else {
                    t
                }
            })
            .collect();
        let mut record = sample_record(step, 50);
        record.layers =
            vec![tritlab_morphism::LayerMorphism::between("w", &world, 1.0, &next, 1.0).unwrap()];
        writer.append(&record).unwrap();
        world = next;
        worlds.push(world.clone());
    }
    writer.sync().unwrap();
    drop(writer);

    let (records, _) = MorphismLogReader::open(&path).unwrap().read_all().unwrap();
    // Forward from the first checkpoint, then backward from the last one.
    let mut replayed = worlds[0].clone();
    for (step, record) in records.iter().enumerate() {
        record.layers[0].flips.apply_forward(&mut replayed).unwrap();
        assert_eq!(replayed, worlds[step + 1]);
    }
    for (step, record) in records.iter().enumerate().rev() {
        record.layers[0]
            .flips
            .apply_backward(&mut replayed)
            .unwrap();
        assert_eq!(replayed, worlds[step]);
    }
}

#[test]
fn a_zero_filled_tail_is_corruption_not_a_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros.tml");
    let (_, offsets) = write_log(&path, 2);
    let end = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 64]);
    fs::write(&path, &bytes).unwrap();
    let error = MorphismLogReader::open(&path)
        .unwrap()
        .read_all()
        .unwrap_err();
    assert!(
        matches!(
            error,
            LogError::CorruptRecord { index: 2, offset, problem: RecordProblem::FrameChecksum { .. }, .. }
                if offset == end
        ),
        "{error}"
    );
    assert!(offsets[1] < end);
}
