//! Keyed environments below the CLI: records, hits, history, and the venv recipe's key.

use std::cell::Cell;
use std::path::Path;

use crate::testutil::store;
use crate::{EnsureSpec, KeyChange};

fn spec(text: &str, name: &str) -> EnsureSpec {
    EnsureSpec {
        texts: vec![text.to_owned()],
        argv: vec!["build".into()],
        name: Some(name.to_owned()),
        ..EnsureSpec::default()
    }
}

#[test]
fn a_key_is_built_once_recorded_and_found_again() {
    let (_tmp, store) = store();
    let builds = Cell::new(0);
    let mut build = |out: &Path| -> crate::Result<()> {
        builds.set(builds.get() + 1);
        std::fs::write(out.join("tool"), b"v1").unwrap();
        Ok(())
    };
    let first = store.ensure(&spec("v1", "tools"), &mut build).unwrap();
    assert!(first.built);
    let again = store.ensure(&spec("v1", "tools"), &mut build).unwrap();
    assert!(!again.built);
    assert_eq!(builds.get(), 1);
    assert_eq!(first.materialized.path, again.materialized.path);
    assert_eq!(
        std::fs::read(first.materialized.path.join("tool")).unwrap(),
        b"v1"
    );

    let records = store.keys().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, first.key);
    assert_eq!(records[0].snapshot, first.materialized.id);
    assert_eq!(records[0].name.as_deref(), Some("tools"));
}

#[test]
fn a_failed_build_records_nothing() {
    let (_tmp, store) = store();
    let mut fail = |_: &Path| -> crate::Result<()> {
        Err(crate::Error::BuildFailed {
            command: "build".into(),
            status: "exit status: 3".into(),
            code: Some(3),
        })
    };
    assert!(store.ensure(&spec("v1", "tools"), &mut fail).is_err());
    assert!(store.keys().unwrap().is_empty());
    assert!(store.snapshot_ids().unwrap().is_empty());
}

#[test]
fn explain_names_what_changed_between_builds_of_a_name() {
    let (_tmp, store) = store();
    for version in ["v1", "v2"] {
        let mut build = |out: &Path| -> crate::Result<()> {
            std::fs::write(out.join("tool"), version).unwrap();
            Ok(())
        };
        store.ensure(&spec(version, "tools"), &mut build).unwrap();
    }
    let history = store.explain("tools").unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history[1].1.is_empty(),
        "the first build has no predecessor"
    );
    assert!(
        history[0]
            .1
            .iter()
            .any(|c| matches!(c, KeyChange::TextsChanged)),
        "{:?}",
        history[0].1
    );
    // The newest build of a name is kept like a pin.
    let named = crate::gc::keep::named_key_snapshots(&store).unwrap();
    assert_eq!(named, vec![("tools".to_owned(), history[0].0.snapshot)]);
}

#[test]
fn the_venv_recipe_keys_on_the_interpreter_and_requirements() {
    let tmp = tempfile::tempdir().unwrap();
    let reqs = tmp.path().join("requirements.txt");
    std::fs::write(&reqs, "six\n").unwrap();
    let recipe = |files: &[std::path::PathBuf]| {
        crate::venv_recipe(files, None, None, crate::LinkPolicy::Auto).unwrap()
    };
    let a = recipe(std::slice::from_ref(&reqs));
    let b = recipe(std::slice::from_ref(&reqs));
    let key = |r: &crate::VenvRecipe| crate::keys::ensure::key_inputs(&r.spec).unwrap().key();
    let before = key(&a);
    assert_eq!(before, key(&b), "one recipe, one key");
    assert!(a.spec.relocate, "venvs contain their own path");
    assert_ne!(before, key(&recipe(&[])));
    // The key reads the requirement files when it is computed: an edit is a new key.
    std::fs::write(&reqs, "six==1.16\n").unwrap();
    assert_ne!(before, key(&a));
    let missing = crate::venv_recipe(
        &[],
        Some(Path::new("/nonexistent/python")),
        None,
        crate::LinkPolicy::Auto,
    );
    assert!(matches!(missing, Err(crate::Error::Interpreter { .. })));
}
