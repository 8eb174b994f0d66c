//! Pins: names that keep snapshots alive. Pins are files (`pins/<name>` holding the id) written
//! by atomic rename: they are the truth, and survive the loss of the index.

use std::fs;
use std::io;

use envstore_tree::SnapshotId;

use crate::{Error, Hint, Result, Store};

/// Longest pin name.
const MAX_PIN_LEN: usize = 200;

/// A pin file holds one id and a newline; a little slack for editors.
const MAX_PIN_FILE: u64 = 256;

/// Every pin in `pins/`: the readable ones by name, and the damaged ones with the reason.
#[derive(Debug, Default)]
pub(crate) struct PinList {
    pub(crate) good: Vec<(String, SnapshotId)>,
    pub(crate) damaged: Vec<(String, String)>,
}

/// What a pin file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    /// The snapshot it names.
    Target(SnapshotId),
    /// It cannot be read as a snapshot id; why.
    Damaged(String),
}

impl PinState {
    /// The snapshot, when the pin is readable.
    pub fn target(&self) -> Option<SnapshotId> {
        match self {
            PinState::Target(id) => Some(*id),
            PinState::Damaged(_) => None,
        }
    }
}

/// Checks a pin name: letters, digits, `.`, `_`, `-`, `+`; not empty, not starting with `.`.
/// Anything else could name a path outside `pins/` (or a hidden temp file) and is refused.
pub fn validate_pin_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PIN_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadPinName {
            name: name.to_owned(),
        })
    }
}

/// What pin `name` holds: `None` when there is no such pin, else its target or why it
/// cannot be read. Read without following a link or blocking on a fifo, and bounded: a pin
/// replaced by a link to `/dev/zero` or by a huge file is damaged, not a hang.
fn read_pin(store: &Store, name: &str) -> Result<Option<PinState>> {
    let path = store.pin_path(name);
    match envstore_fs::read_bounded(&path, MAX_PIN_FILE) {
        Ok(bytes) => Ok(Some(
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .map_or_else(
                    || PinState::Damaged("it does not hold a snapshot id".to_owned()),
                    PinState::Target,
                ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
        Err(e) => Ok(Some(PinState::Damaged(e.to_string()))),
    }
}

/// The snapshot a pin names, if the pin exists; a damaged pin is an error saying how to
/// replace or remove it.
pub(crate) fn pin_target(store: &Store, name: &str) -> Result<Option<SnapshotId>> {
    if validate_pin_name(name).is_err() {
        return Ok(None);
    }
    match read_pin(store, name)? {
        None => Ok(None),
        Some(PinState::Target(id)) => Ok(Some(id)),
        Some(PinState::Damaged(reason)) => Err(Error::DamagedPin {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// Points pin `name` at `id` (replacing what it pointed at, a damaged pin included);
/// returns the previous target.
pub(crate) fn pin(store: &Store, name: &str, id: &SnapshotId) -> Result<Option<SnapshotId>> {
    validate_pin_name(name)?;
    store.require_writable("pin")?;
    let _lock = store.lock_shared()?;
    if !store.has_snapshot(id) {
        return Err(Error::UnknownSnapshot {
            prefix: id.to_hex(),
        });
    }
    let previous = read_pin(store, name)?.and_then(|p| p.target());
    store.write_file_atomic(&store.pin_path(name), format!("{id}\n").as_bytes())?;
    Ok(previous)
}

/// Removes pin `name`; returns what it held (a damaged pin is removed all the same: never
/// through a link).
pub(crate) fn unpin(store: &Store, name: &str) -> Result<PinState> {
    validate_pin_name(name)?;
    let Some(target) = read_pin(store, name)? else {
        return Err(Error::UnknownPin {
            name: name.to_owned(),
            near: near_pins(store, name)?,
        });
    };
    store.require_writable("unpin")?;
    let path = store.pin_path(name);
    envstore_fs::remove_all(&path).map_err(Error::io("remove", &path))?;
    Ok(target)
}

/// Pin names close to `name` (edit distance, or containing it), closest first: for "did
/// you mean" in errors.
pub(super) fn near_pins(store: &Store, name: &str) -> Result<Vec<String>> {
    let mut near: Vec<(usize, String)> = pins(store)?
        .into_iter()
        .map(|(pin, _)| (strsim::levenshtein(name, &pin), pin))
        .filter(|(d, pin)| *d <= 2.max(name.len() / 3) || pin.contains(name))
        .collect();
    near.sort();
    Ok(near.into_iter().map(|(_, p)| p).take(5).collect())
}

/// Every readable pin, by name. A damaged pin is left out with a warning (see
/// [`crate::Store::take_warnings`]): one bad pin must not stop `ls` or `prune` for the store.
pub(crate) fn pins(store: &Store) -> Result<Vec<(String, SnapshotId)>> {
    let PinList { good, damaged } = all_pins(store)?;
    for (name, reason) in damaged {
        store.warn_with(
            format!("pin {name} is damaged ({reason})"),
            Hint::ReplacePin { name: name.clone() },
        );
    }
    Ok(good)
}

/// Every pin: the readable ones, and the damaged ones with the reason.
pub(crate) fn all_pins(store: &Store) -> Result<PinList> {
    let dir = store.root().join("pins");
    let mut list = PinList::default();
    for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
        let entry = entry.map_err(Error::io("read", &dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if validate_pin_name(&name).is_err() {
            continue; // a temp file of a pin being written
        }
        match read_pin(store, &name)? {
            Some(PinState::Target(id)) => list.good.push((name, id)),
            Some(PinState::Damaged(reason)) => list.damaged.push((name, reason)),
            None => {}
        }
    }
    list.good.sort();
    list.damaged.sort();
    Ok(list)
}
