//! The library's [`Hint`]s in the CLI's own words: the commands, flags and variables a user
//! types. The library names the remedy; only this file says how to ask for it.

use envstore::Hint;

pub fn word(hint: &Hint) -> String {
    match hint {
        Hint::Repair => "run `envstore verify --repair` (it replaces what is damaged; a link in \
                         the store is removed itself, never what it points at), then retry"
            .into(),
        Hint::WaitLonger => "retry, or wait longer with ENVSTORE_LOCK_TIMEOUT=<seconds>".into(),
        Hint::OtherStore => {
            "use another store: --store DIR (or ENVSTORE_DIR), a new or empty directory".into()
        }
        Hint::ReplacePin { name } => {
            format!("`envstore pin {name} SOURCE` replaces it, `envstore unpin {name}` removes it")
        }
        Hint::PushAgain => "push it again from a good store (`envstore remote prune` does not \
                            fix content)"
            .into(),
        Hint::RemoteUnreachable => {
            "the remote did not answer: check the URL, the network, and AWS_ENDPOINT_URL for S3"
                .into()
        }
        Hint::RemoteDenied => "the remote refused the credentials: check AWS_ACCESS_KEY_ID and \
                               AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials), or the user in an \
                               http URL"
            .into(),
        Hint::RemoveRemote { name } => {
            format!("`envstore remote rm {name}` first to change it")
        }
        Hint::AddRemote => {
            "add one with `envstore remote add NAME URL`, or give --remote URL".into()
        }
        Hint::ChooseRemote => "say which with --to/--from NAME".into(),
        Hint::TrustKey => "`envstore remote ls` shows the trusted keys; pull by id, or trust the \
                           signer's public key with `envstore remote trust NAME:HEX`"
            .into(),
        Hint::Force => "`envstore rm --force` removes it anyway (and the pin or root that keeps \
                        it); never one in use"
            .into(),
        Hint::ListKeys => "`envstore keys` lists the key records".into(),
        Hint::ListSnapshots => "`envstore ls` lists the snapshots".into(),
        Hint::Prune => "`envstore prune` removes it".into(),
        _ => String::new(),
    }
}
