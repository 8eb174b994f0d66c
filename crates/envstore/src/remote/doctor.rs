//! `remote doctor`: what works on a remote and how long it took, step by step: read, list,
//! write, read back, create-if-absent, delete. Each failure is named as what it is (refused
//! credentials, a missing bucket, a remote that does not answer), never a silent miss.

use std::time::{Duration, Instant};

use envstore_remote::format;

use crate::remote::open::Remote;

/// One step of `remote doctor`.
#[derive(Debug)]
pub struct RemoteProbe {
    pub step: &'static str,
    /// What it found, or why it failed.
    pub outcome: std::result::Result<String, crate::Error>,
    pub took: Duration,
}

fn timed<T>(
    step: &'static str,
    probes: &mut Vec<RemoteProbe>,
    f: impl FnOnce() -> crate::Result<(T, String)>,
) -> Option<T> {
    let start = Instant::now();
    let result = f();
    let took = start.elapsed();
    match result {
        Ok((value, said)) => {
            probes.push(RemoteProbe {
                step,
                outcome: Ok(said),
                took,
            });
            Some(value)
        }
        Err(e) => {
            probes.push(RemoteProbe {
                step,
                outcome: Err(e),
                took,
            });
            None
        }
    }
}

pub(crate) fn remote_doctor(remote: &Remote) -> Vec<RemoteProbe> {
    let storage = remote.storage();
    let mut probes = Vec::new();
    let read = timed("read", &mut probes, || {
        let said = match storage.get(format::MARKER_KEY, 4096)? {
            Some(m) if m == format::MARKER => "an envstore remote, format 1".to_owned(),
            Some(_) => {
                return Err(remote.refused(format!(
                    "its {} file is not envstore's format 1",
                    format::MARKER_KEY
                )));
            }
            None => "no envstore remote here yet (the first push makes one)".to_owned(),
        };
        Ok(((), said))
    });
    if read.is_none() {
        // Nothing else can work (and a dead remote costs a time-out per step).
        return probes;
    }
    timed("list", &mut probes, || {
        let packs = remote.list_packs()?;
        Ok(((), format!("{} packs", packs.complete.len())))
    });
    // A name no other doctor uses at the same moment (not a secret).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let nonce = blake3::hash(format!("{}-{nanos}", std::process::id()).as_bytes());
    let key = format!("probe/doctor-{}", &nonce.to_hex()[..32]);
    let body = format!("envstore remote doctor {}\n", nonce.to_hex()).into_bytes();
    let wrote = timed("write", &mut probes, || {
        storage.put(&key, body.clone())?;
        Ok(((), format!("{} bytes to {key}", body.len())))
    });
    if wrote.is_some() {
        timed("read back", &mut probes, || {
            match storage.get(&key, 4096)? {
                Some(b) if b == body => Ok(((), "the same bytes".to_owned())),
                Some(_) => Err(remote.refused("it returned other bytes than were written".into())),
                None => Err(remote.refused(
                    "what was just written is not there (a cache in front of it?)".into(),
                )),
            }
        });
        timed("create-if-absent", &mut probes, || {
            let honoured = envstore_remote::probe_create_if_absent(storage)?;
            Ok((
                (),
                if honoured {
                    "honoured".to_owned()
                } else {
                    "not honoured (nothing envstore does relies on it)".to_owned()
                },
            ))
        });
        timed("delete", &mut probes, || {
            storage.delete(&key)?;
            match storage.get(&key, 4096)? {
                None => Ok(((), "gone".to_owned())),
                Some(_) => Err(remote.refused("the deleted probe is still there".into())),
            }
        });
    }
    probes
}
