//! The importer reads archives from anywhere (downloads, CI caches, stdin). Errors are fine;
//! panics are bugs. Whatever it accepts has valid relative paths and in-archive hard links.
#![no_main]

use envstore_archive::{ArchiveError, Event, classify, read};
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 1 << 20;

fn check(path: &[Vec<u8>]) {
    assert!(!path.is_empty());
    for name in path {
        assert!(envstore_tree::is_valid_name(name), "accepted an invalid name {name:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut sink = |event: Event<'_>| -> Result<(), ArchiveError> {
        match event {
            Event::Dir { path } | Event::Symlink { path, .. } => check(&path),
            Event::Hardlink { path, target } => {
                check(&path);
                check(&target);
            }
            Event::File { path, content, .. } => {
                check(&path);
                std::io::copy(content, &mut std::io::sink()).map_err(|e| classify(e, LIMIT))?;
            }
        }
        Ok(())
    };
    let _ = read(data, LIMIT, &mut sink);
});
