//! Verify and repair, below the CLI: what a pass reports, and what repair mends.

use std::os::unix::fs::PermissionsExt;

use envstore_tree::ObjectId;
use envstore_walk::Filter;

use crate::testutil::{store, tree};
use crate::verify::report::Problem;

fn object_of(content: &[u8]) -> ObjectId {
    blake3::hash(content).into()
}

#[test]
fn a_damaged_object_is_named_with_its_snapshot_and_restored_from_the_source() {
    let (tmp, store) = store();
    let content: &[u8] = b"print('hello')\n";
    let dir = tree(
        tmp.path(),
        "env",
        &[("hello.py", content), ("other", b"other")],
    );
    let id = store.ingest(&dir, &Filter::default()).unwrap().id;
    let object = store.objects().path(&object_of(content), false);
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&object, b"print('tampered')\n").unwrap();

    let report = store.verify(None, false).unwrap();
    assert!(!report.ok(false));
    let named = report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::CorruptObject { snapshots, .. } if snapshots.contains(&id)));
    assert!(named, "{:?}", report.problems);
    // Only looking changed nothing.
    assert_eq!(std::fs::read(&object).unwrap(), b"print('tampered')\n");

    // The snapshot's source still has the bytes: repair restores the object from it.
    let repaired = store.verify(None, true).unwrap();
    assert!(repaired.ok(true), "{:?}", repaired.unrepaired);
    assert_eq!(std::fs::read(&object).unwrap(), content);
    assert!(store.verify(None, false).unwrap().ok(false));
}

#[test]
fn an_object_lost_for_good_is_reported_unrepaired_and_nothing_else_changes() {
    let (tmp, store) = store();
    let gone: &[u8] = b"only here";
    let dir = tree(tmp.path(), "a", &[("gone", gone)]);
    let a = store.ingest(&dir, &Filter::default()).unwrap().id;
    let b = crate::testutil::ingest(&store, tmp.path(), "b", &[("kept", b"kept")]);
    std::fs::remove_dir_all(&dir).unwrap(); // no source to restore from
    std::fs::remove_file(store.objects().path(&object_of(gone), false)).unwrap();

    let report = store.verify(None, false).unwrap();
    let missing = report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::MissingObject { snapshots, .. } if snapshots.contains(&a)));
    assert!(missing, "{:?}", report.problems);
    // No copy anywhere: repair says so, keeps the snapshot (its trees are intact) and
    // touches nothing else.
    let repaired = store.verify(None, true).unwrap();
    assert!(!repaired.ok(true));
    let unrepaired = repaired
        .unrepaired
        .iter()
        .any(|p| matches!(p, Problem::MissingObject { snapshots, .. } if snapshots.contains(&a)));
    assert!(unrepaired, "{repaired:?}");
    assert!(store.has_snapshot(&a) && store.has_snapshot(&b));
    assert!(store.verify(Some(&b), false).unwrap().ok(false));
}

#[test]
fn a_written_materialization_is_rebuilt_by_repair() {
    let (tmp, store) = store();
    let dir = tree(tmp.path(), "env", &[("bin/tool*", b"#!/bin/sh\necho hi\n")]);
    let done = store
        .materialize(
            &crate::Source::Dir(dir),
            &Filter::default(),
            crate::LinkPolicy::Only(crate::LinkMode::Copy),
        )
        .unwrap();
    let file = done.path.join("bin/tool");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&file, b"#!/bin/sh\necho changed\n").unwrap();
    let report = store.verify(None, false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Materialization { .. })),
        "{:?}",
        report.problems
    );
    assert!(store.verify(None, true).unwrap().ok(true));
    assert_eq!(std::fs::read(&file).unwrap(), b"#!/bin/sh\necho hi\n");
}
