//! Packs are read from the store, which may be damaged. Every read of a damaged pack must end in
//! an error, never a panic, an allocation beyond the stated limits, or content that does not
//! match its id.
#![no_main]

use std::io::Write;

use envstore_pack::{EntryKind, PackReader, decode_recipe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    let Ok(reader) = PackReader::open(file.path()) else {
        return;
    };
    let Ok(headers) = reader.headers() else {
        return;
    };
    for header in headers {
        if let Ok(block) = reader.block_at(header.offset) {
            for (offset, entry) in block.header.placed() {
                let bytes = block.slice(offset, entry.len).expect("entries lie inside the block");
                match entry.kind {
                    EntryKind::Chunk => assert_eq!(blake3::hash(bytes).as_bytes(), &entry.id),
                    EntryKind::Recipe => assert!(decode_recipe(bytes).is_some()),
                }
            }
        }
    }
});
