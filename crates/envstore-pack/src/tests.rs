use super::*;

fn pseudo_random(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The cut points are part of the store format. This vector was computed with an independent
/// implementation (pyfastcdc 0.3.1, FastCDC 2020, NC 1, min 16 KiB, avg 64 KiB, max 256 KiB):
/// if a fastcdc upgrade moves them, this fails before any store is written differently.
#[test]
fn cut_points_match_the_test_vector() {
    let data = pseudo_random(b"envstore cut points", 1 << 20);
    let ends: Vec<usize> = cut(&data).iter().map(|r| r.end).collect();
    assert_eq!(
        ends,
        [
            67526, 115236, 191863, 267471, 444872, 516561, 620266, 708411, 748560, 871041, 969264,
            1027477, 1048576
        ]
    );
    assert_eq!(
        blake3::hash(&data[..67526]).to_hex().as_str(),
        "7343879a770cb923ece5d5290d534f97a49b011525085d53f196c944a5e046db"
    );
}

#[test]
fn streaming_cuts_at_the_same_points() {
    for (seed, len) in [(&b"envstore cut points"[..], 1 << 20), (b"long", 5 << 20)] {
        let data = pseudo_random(seed, len);
        let sliced: Vec<Vec<u8>> = cut(&data).into_iter().map(|r| data[r].to_vec()).collect();
        let streamed: Vec<Vec<u8>> = cut_stream(&data[..]).map(Result::unwrap).collect();
        assert_eq!(streamed, sliced);
    }
}

#[test]
fn small_files_are_one_chunk_and_chunks_cover_the_file() {
    let one = |r: Vec<Range<usize>>| <[_; 1]>::try_from(r).ok().map(|[r]| (r.start, r.end));
    assert_eq!(one(cut(b"")), Some((0, 0)));
    assert_eq!(
        one(cut(&[7; SINGLE_CHUNK_MAX])),
        Some((0, SINGLE_CHUNK_MAX))
    );
    let data = pseudo_random(b"cover", 3 << 20);
    let ranges = cut(&data);
    assert!(ranges.len() > 1);
    let mut at = 0;
    for r in &ranges {
        assert_eq!(r.start, at);
        assert!(r.len() <= MAX_CHUNK);
        at = r.end;
    }
    assert_eq!(at, data.len());
    // Content-defined: an insertion at the front moves only the first cut points.
    let mut shifted = b"a few new bytes".to_vec();
    shifted.extend_from_slice(&data);
    let ids = |d: &[u8]| -> Vec<blake3::Hash> {
        cut(d).into_iter().map(|r| blake3::hash(&d[r])).collect()
    };
    let (a, b) = (ids(&data), ids(&shifted));
    let shared = a.iter().filter(|h| b.contains(h)).count();
    assert!(
        shared >= a.len() - 2,
        "{shared} of {} chunks survive",
        a.len()
    );
}

#[test]
fn recipes_round_trip_and_reject_garbage() {
    let chunks = [ChunkId::from_bytes([1; 32]), ChunkId::from_bytes([2; 32])];
    let bytes = encode_recipe(12345, &chunks);
    assert_eq!(decode_recipe(&bytes), Some((12345, chunks.to_vec())));
    assert_eq!(decode_recipe(&bytes[..bytes.len() - 1]), None);
    assert_eq!(decode_recipe(b"short"), None);
}

fn write_pack(dir: &Path, items: &[Vec<u8>]) -> WrittenPack {
    let mut writer = PackWriter::create(dir).unwrap();
    let mut block = BlockBuilder::default();
    for item in items {
        block.push(EntryKind::Chunk, *blake3::hash(item).as_bytes(), item);
        if block.full() {
            writer
                .append(std::mem::take(&mut block).encode().unwrap())
                .unwrap();
        }
    }
    let recipe = encode_recipe(3, &[ChunkId::from_bytes([9; 32])]);
    block.push(EntryKind::Recipe, [8; 32], &recipe);
    writer.append(block.encode().unwrap()).unwrap();
    writer.finish().unwrap()
}

#[test]
fn a_pack_round_trips_and_is_named_by_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Vec<u8>> = (0..40u8)
        .map(|i| {
            let mut v = pseudo_random(&[i], 40_000);
            v.extend(std::iter::repeat_n(i, 20_000)); // compressible
            v
        })
        .collect();
    let pack = write_pack(dir.path(), &items);
    assert_eq!(pack.path, pack_path(dir.path(), &pack.id));
    let bytes = fs::read(&pack.path).unwrap();
    assert_eq!(PackId::from(blake3::hash(&bytes)), pack.id);
    assert!((bytes.len() as u64) < 40 * 60_000, "compressed");
    assert_eq!(
        parse_pack_name(&format!("{}.pack", pack.id.to_hex())),
        Some(pack.id)
    );
    // No temp file is left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    let reader = PackReader::open(&pack.path).unwrap();
    let headers = reader.headers().unwrap();
    assert!(headers.len() > 1, "several blocks");
    assert_eq!(
        headers.iter().map(|h| h.offset).collect::<Vec<_>>(),
        pack.blocks.iter().map(|(o, _)| *o).collect::<Vec<_>>()
    );
    let mut found = 0;
    for header in &headers {
        let block = reader.block_at(header.offset).unwrap();
        for (start, e) in header.placed() {
            let bytes = block.slice(start, e.len).unwrap();
            match e.kind {
                EntryKind::Chunk => {
                    assert!(items.iter().any(|i| i.as_slice() == bytes));
                    found += 1;
                }
                EntryKind::Recipe => assert_eq!(decode_recipe(bytes).unwrap().0, 3),
            }
        }
    }
    assert_eq!(found, items.len());
}

#[test]
fn damage_anywhere_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Vec<u8>> = (0..3u8).map(|i| pseudo_random(&[i], 5000)).collect();
    let pack = write_pack(dir.path(), &items);
    let good = fs::read(&pack.path).unwrap();
    let copy = dir.path().join("damaged");
    // Flip each byte in turn (headers, entry table, compressed data): every read either fails
    // with a clear error or, for bytes nothing reads, returns the original content.
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x41;
        fs::write(&copy, &bad).unwrap();
        let result = PackReader::open(&copy).and_then(|r| {
            r.headers()?
                .iter()
                .map(|h| r.block_at(h.offset).map(|b| b.raw))
                .collect::<Result<Vec<_>, _>>()
        });
        match result {
            Err(PackError::Corrupt { .. }) => {}
            Err(e) => panic!("byte {i}: unexpected error {e}"),
            Ok(blocks) => panic!("byte {i}: damage went unnoticed ({} blocks)", blocks.len()),
        }
    }
    // Truncation too: inside a block the scan notices; at a block boundary only the name does.
    for cut_at in [0, 4, 20, good.len() - 1] {
        fs::write(&copy, &good[..cut_at]).unwrap();
        let result = PackReader::open(&copy).and_then(|r| r.headers());
        assert!(result.is_err(), "truncated at {cut_at}");
    }
    fs::write(&copy, &good[..PACK_MAGIC.len()]).unwrap();
    let reader = PackReader::open(&copy).unwrap();
    assert!(reader.headers().unwrap().is_empty());
    assert_ne!(reader.content_id().unwrap(), pack.id);
    assert_eq!(
        PackReader::open(&pack.path).unwrap().content_id().unwrap(),
        pack.id
    );
}
