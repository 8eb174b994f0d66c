//! The prune plan and its execution, below the CLI.

use std::time::Duration;

use crate::testutil::{ingest, store};
use crate::{PruneOptions, Reason};

fn now() -> PruneOptions {
    PruneOptions {
        older_than: Duration::ZERO,
        ..PruneOptions::default()
    }
}

#[test]
fn the_plan_removes_what_is_unused_and_keeps_pins_and_recent_use() {
    let (tmp, store) = store();
    let shared: &[u8] = b"shared by both";
    let a = ingest(
        &store,
        tmp.path(),
        "a",
        &[("lib.py", shared), ("a.py", b"only a")],
    );
    let b = ingest(
        &store,
        tmp.path(),
        "b",
        &[("lib.py", shared), ("b.py", b"only b")],
    );
    store.pin("keep-a", &a).unwrap();

    // Recent use keeps everything under the default window.
    let plan = store.prune_plan(&PruneOptions::default()).unwrap();
    assert!(plan.remove.is_empty(), "{plan:?}");

    let plan = store.prune_plan(&now()).unwrap();
    let removed: Vec<_> = plan.remove.iter().map(|r| r.id).collect();
    assert_eq!(removed, vec![b]);
    assert_eq!(plan.remove[0].reason, Reason::Unused);
    // b's own object and its trees; the shared object stays.
    assert!(plan.unreferenced >= 2, "{plan:?}");
    assert!(plan.freed_bytes() > 0);
    // A dry run changed nothing.
    assert!(store.has_snapshot(&b));

    let done = store.prune(&now()).unwrap();
    assert_eq!(done.remove.len(), 1);
    assert!(!store.has_snapshot(&b) && store.has_snapshot(&a));
    let report = store.verify(None, false).unwrap();
    assert!(report.ok(false), "{:?}", report.problems);
}

#[test]
fn a_leased_snapshot_is_planned_as_leased_never_removed() {
    let (tmp, store) = store();
    let a = ingest(&store, tmp.path(), "a", &[("x", b"x")]);
    let lease = store.lease(&a).unwrap();
    let plan = store.prune(&now()).unwrap();
    assert!(plan.remove.is_empty());
    assert_eq!(plan.leased, vec![a]);
    assert!(store.has_snapshot(&a));
    drop(lease);
    let plan = store.prune(&now()).unwrap();
    assert_eq!(plan.remove.len(), 1);
}

#[test]
fn the_size_bound_removes_the_least_recently_used_first() {
    let (tmp, store) = store();
    let old = ingest(&store, tmp.path(), "old", &[("f", &[1u8; 4096][..])]);
    let new = ingest(&store, tmp.path(), "new", &[("f", &[2u8; 4096][..])]);
    // Make `old` older in use than `new`.
    let record = store.snapshot_file(&old);
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&record)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let plan = store
        .prune_plan(&PruneOptions {
            max_size: Some(6000),
            ..PruneOptions::default()
        })
        .unwrap();
    let removed: Vec<_> = plan.remove.iter().map(|r| (r.id, r.reason)).collect();
    assert_eq!(removed, vec![(old, Reason::Size)]);
    assert!(!plan.size_unmet);
    assert!(store.has_snapshot(&new));
}

#[test]
fn prune_all_empties_the_store_but_what_is_in_use() {
    let (tmp, store) = store();
    let a = ingest(&store, tmp.path(), "a", &[("x", b"x")]);
    let b = ingest(&store, tmp.path(), "b", &[("y", b"y")]);
    store.pin("a", &a).unwrap();
    let _lease = store.lease(&b).unwrap();
    let dry = store.prune_all(true).unwrap();
    assert!(store.has_snapshot(&a), "a dry run removes nothing");
    assert_eq!(dry.in_use.len(), 1);
    let done = store.prune_all(false).unwrap();
    assert_eq!(done.unpinned, vec!["a".to_owned()]);
    assert!(!store.has_snapshot(&a) && store.has_snapshot(&b));
}

#[test]
fn a_damaged_pin_keeps_every_snapshot_until_it_is_mended() {
    let (tmp, store) = store();
    let a = ingest(&store, tmp.path(), "a", &[("x", b"x")]);
    store.pin("keep", &a).unwrap();
    // Damaged on disk: it no longer says which snapshot it keeps.
    std::fs::write(store.pin_path("keep"), b"garbage\n").unwrap();
    let plan = store.prune(&now()).unwrap();
    assert!(plan.remove.is_empty(), "{plan:?}");
    assert_eq!(plan.damaged_pins, vec!["keep".to_owned()]);
    assert!(store.has_snapshot(&a));
    let warned = store.take_warnings();
    assert!(
        warned.iter().any(|w| w.hint
            == Some(crate::Hint::ReplacePin {
                name: "keep".into()
            })),
        "{warned:?}"
    );
    store.unpin("keep").unwrap();
    assert_eq!(store.prune(&now()).unwrap().remove.len(), 1);
}
