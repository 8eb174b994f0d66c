//! The push protocol's steps, below the CLI, on a directory remote wrapped so a test can take
//! things away at the worst moment (what a concurrent `remote prune` or a lossy store does).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use envstore_remote::{Counters, Listed, Result as RResult, Storage};

use crate::remote::open::Remote;
use crate::testutil;

/// What a test does after each `head_many`: the real storage, the keys asked, the how-many-th.
type Hook = Arc<dyn Fn(&dyn Storage, &[String], usize) + Send + Sync>;

/// A storage that runs a hook after each `head_many`, so a test can delete a pack right after
/// a push checked it.
struct Meddling {
    inner: Box<dyn Storage>,
    heads: Mutex<Vec<Vec<String>>>,
    after_head: Hook,
}

impl std::fmt::Debug for Meddling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meddling")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Storage for Meddling {
    fn describe(&self) -> &str {
        self.inner.describe()
    }
    fn get(&self, key: &str, limit: u64) -> RResult<Option<Vec<u8>>> {
        self.inner.get(key, limit)
    }
    fn get_many(&self, keys: &[String], limit: u64) -> RResult<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys, limit)
    }
    fn get_ranges_into(
        &self,
        requests: &[(String, Range<u64>)],
        file: &std::fs::File,
        at: u64,
    ) -> RResult<()> {
        self.inner.get_ranges_into(requests, file, at)
    }
    fn head_many(&self, keys: &[String]) -> RResult<Vec<Option<Listed>>> {
        let got = self.inner.head_many(keys)?;
        let n = {
            let mut heads = self.heads.lock().unwrap();
            heads.push(keys.to_vec());
            heads.len()
        };
        (self.after_head)(&*self.inner, keys, n);
        Ok(got)
    }
    fn put(&self, key: &str, data: Vec<u8>) -> RResult<()> {
        self.inner.put(key, data)
    }
    fn put_if_absent(&self, key: &str, data: Vec<u8>) -> RResult<bool> {
        self.inner.put_if_absent(key, data)
    }
    fn list(&self, dir: &str) -> RResult<Vec<Listed>> {
        self.inner.list(dir)
    }
    fn delete(&self, key: &str) -> RResult<()> {
        self.inner.delete(key)
    }
    fn counters(&self) -> Counters {
        self.inner.counters()
    }
}

fn remote_at(dir: &std::path::Path, after_head: Hook) -> Remote {
    let url: envstore_remote::RemoteUrl = format!("file://{}", dir.display()).parse().unwrap();
    let inner = envstore_remote::open(&url).unwrap();
    Remote::with_storage(
        &url,
        Box::new(Meddling {
            inner,
            heads: Mutex::new(Vec::new()),
            after_head,
        }),
    )
}

fn big(seed: u8) -> Vec<u8> {
    (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

#[test]
fn a_push_that_finds_a_pack_it_relies_on_gone_at_the_final_check_goes_back_and_uploads_it() {
    let (dir, store) = testutil::store();
    let remote_dir = dir.path().join("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let shared: &[(&str, &[u8])] = &[
        ("lib/pkg/a.py", b"a = 1\n"),
        ("lib/pkg/b.py", b"b = 2\n"),
        ("lib/pkg/c.py", b"c = 3\n"),
        ("lib/pkg/d.py", b"d = 4\n"),
    ];
    let first = testutil::ingest(&store, dir.path(), "one", shared);
    let plain = remote_at(&remote_dir, Arc::new(|_, _, _| {}));
    let pushed = crate::remote::push::push(&store, &plain, &first, None, None).unwrap();
    let taken = pushed.packs[0];

    // A second snapshot sharing lib/pkg: its push finds that tree's summary and relies on the
    // first push's pack. Right after the push checked that pack, it goes (as if pruned).
    let blob = big(1);
    let mut files = shared.to_vec();
    files.push(("lib/new.bin", &blob));
    let second = testutil::ingest(&store, dir.path(), "two", &files);
    let pack_key = envstore_remote::format::pack_key(&taken);
    let hook_key = pack_key.clone();
    let done = std::sync::atomic::AtomicBool::new(false);
    let meddled = remote_at(
        &remote_dir,
        Arc::new(move |inner: &dyn Storage, keys: &[String], _| {
            if keys.contains(&hook_key) && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                inner.delete(&hook_key).unwrap();
            }
        }),
    );
    let report = crate::remote::push::push(&store, &meddled, &second, None, None).unwrap();
    // It went back: the shared files were uploaded again (the same chunks in the same order
    // make the same pack, under the same name), and the pack is there once more.
    assert!(report.new_chunks >= 5, "{report:?}");
    assert!(report.packs.contains(&taken), "{report:?}");
    assert!(plain.storage().get(&pack_key, u64::MAX).unwrap().is_some());

    // What it published pulls whole into an empty store.
    let (_dir2, other) = testutil::store();
    crate::remote::pull::pull(&other, &plain, &second).unwrap();
    let verified = other.verify(None, false).unwrap();
    assert!(verified.ok(false), "{verified:?}");
}

#[test]
fn a_marked_pack_is_not_relied_on_and_prune_marks_unmarks_and_deletes() {
    let (dir, store) = testutil::store();
    let remote_dir = dir.path().join("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let remote = remote_at(&remote_dir, Arc::new(|_, _, _| {}));
    let blob = big(2);
    let files: &[(&str, &[u8])] = &[("lib/x.bin", &blob), ("lib/y.py", b"y\n")];
    let id = testutil::ingest(&store, dir.path(), "one", files);
    let first = crate::remote::push::push(&store, &remote, &id, None, None).unwrap();
    let options = |dry_run| crate::RemotePruneOptions {
        older_than: std::time::Duration::ZERO,
        grace: std::time::Duration::ZERO,
        dry_run,
        max_size: None,
    };
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Unnamed and older than 0s: its record goes, its packs are marked, not deleted.
    let pruned = crate::remote::prune::remote_prune(&remote, &options(false)).unwrap();
    assert_eq!(pruned.removed_snapshots, vec![id]);
    assert_eq!(pruned.marked, first.packs);
    assert!(pruned.removed_packs.is_empty());
    // A push now does not rely on the marked pack: it uploads again, and the record it
    // publishes makes the next prune unmark the pack instead of deleting it.
    let again = crate::remote::push::push(&store, &remote, &id, Some("keep"), None).unwrap();
    assert!(again.new_chunks > 0, "{again:?}");
    let pruned = crate::remote::prune::remote_prune(&remote, &options(false)).unwrap();
    assert_eq!(pruned.unmarked, 1, "{pruned:?}");
    assert!(pruned.removed_packs.is_empty(), "{pruned:?}");
    // Without the name and past the grace period, a later prune marks and then deletes.
    remote.storage().delete("refs/keep").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let marked = crate::remote::prune::remote_prune(&remote, &options(false)).unwrap();
    assert_eq!(marked.marked.len(), 1, "{marked:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let deleted = crate::remote::prune::remote_prune(&remote, &options(false)).unwrap();
    assert_eq!(deleted.removed_packs.len(), 1, "{deleted:?}");
    assert!(remote.list_packs().unwrap().complete.is_empty());
}
