//! Everything a remote sends is read by these decoders before anything is checked against a
//! hash: pack indexes, snapshot records (with their compressed trees and the pack lines a
//! push reads alone), refs, the marked list, tree and object summaries and the remotes config. Errors are fine; panics are bugs. What decodes re-encodes the same.
#![no_main]

use envstore_remote::config::Config;
use envstore_remote::format::{Marked, PackIndex, Ref};
use envstore_remote::record::Record;
use envstore_remote::summary::{Of, Summary};
use envstore_tree::{ObjectId, PackId, SnapshotId, TreeId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 7 {
        0 => {
            let id = PackId::from_bytes(rest.get(8..40).map_or([0; 32], |b| b.try_into().unwrap()));
            if let Ok(idx) = PackIndex::decode(rest, &id) {
                assert_eq!(idx.encode(), rest);
            }
        }
        1 => {
            if let Ok(record) = Record::decode(rest, &SnapshotId::from_bytes([7; 32])) {
                let again = Record::decode(&record.encode().unwrap(), &SnapshotId::from_bytes([7; 32]));
                assert_eq!(again.unwrap(), record);
            }
        }
        2 => {
            if let Ok(r) = Ref::decode(rest, "main") {
                let _ = r.check(&[]);
                assert_eq!(Ref::decode(&r.encode(), "main").unwrap().snapshot, r.snapshot);
            }
        }
        3 => {
            if let Ok(m) = Marked::decode(rest) {
                assert_eq!(Marked::decode(&m.encode()).unwrap(), m);
            }
        }
        4 => {
            // What a push reads of a base record: its pack lines, the rest untouched.
            let _ = Record::pack_lines(rest);
        }
        5 => {
            for of in [
                Of::Tree(TreeId::from_bytes([3; 32])),
                Of::Object(ObjectId::from_bytes([3; 32])),
            ] {
                if let Ok(s) = Summary::decode(rest, &of) {
                    assert_eq!(Summary::decode(&s.encode(), &of).unwrap(), s);
                }
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest)
                && let Ok(config) = Config::parse(text)
            {
                assert_eq!(Config::parse(&config.to_text()).unwrap(), config);
            }
        }
    }
});
