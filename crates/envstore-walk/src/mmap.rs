//! The one place that memory-maps files.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Advice, MmapOptions};

/// Bytes mapped at once. Windows keep resident memory bounded (two threads, two windows) while
/// still letting blake3 hash a whole window with SIMD and, for the largest files, several threads.
const WINDOW: u64 = 16 << 20;

/// Hashes the first `len` bytes of `file` through memory maps of at most [`WINDOW`] bytes.
///
/// # Safety
/// The caller must accept that another process truncating `file` while it is mapped makes the
/// kernel raise SIGBUS, which kills this process (the same trade ripgrep makes). envstore hashes
/// build environments that nothing writes to while they are used; files being written
/// concurrently are not supported, and mapping is only used for large files.
pub(crate) unsafe fn hash_mapped(
    file: &File,
    len: u64,
    hasher: &mut blake3::Hasher,
) -> io::Result<()> {
    let mut offset = 0;
    while offset < len {
        let window = (len - offset).min(WINDOW);
        // SAFETY: see the function's contract above; the map is dropped before the next window.
        let map = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(usize::try_from(window).expect("window fits in usize"))
                .map(file)?
        };
        // Advice is only a hint; ignore failure.
        let _ = map.advise(Advice::Sequential);
        if window >= 4 << 20 {
            hasher.update_rayon(&map);
        } else {
            hasher.update(&map);
        }
        offset += window;
    }
    Ok(())
}
