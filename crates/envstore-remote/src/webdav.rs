//! A PUT whose body streams from a file, for WebDAV: object_store's HTTP store sends a body
//! only from memory and has no multipart upload, so a large snapshot record (tens of
//! megabytes at a million files) would otherwise be held whole. Parents are created with
//! MKCOL when the server answers 409 or 404, as object_store does.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};

use crate::FailKind;

/// The client and root of a WebDAV remote.
#[derive(Debug)]
pub(crate) struct StreamedPut {
    client: reqwest::Client,
    base: String,
}

/// What a streamed PUT reports: the kind of failure and a message.
pub(crate) type Failed = (FailKind, String);

impl StreamedPut {
    /// A client with the same bounds as object_store's: `idle` to connect and between reads,
    /// an hour for a whole transfer; `authorization` sent with every request.
    pub(crate) fn new(
        base: &str,
        authorization: Option<header::HeaderValue>,
        idle: Duration,
    ) -> Result<StreamedPut, String> {
        let mut headers = header::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(idle.min(Duration::from_secs(5)))
            .read_timeout(idle)
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(StreamedPut {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// Writes the file at `path` (`len` bytes) to `key`.
    pub(crate) async fn put_file(&self, key: &str, path: &Path, len: u64) -> Result<(), Failed> {
        let mut made_parents = false;
        loop {
            let file = std::fs::File::open(path).map_err(|e| {
                (
                    FailKind::Other,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let body = reqwest::Body::wrap_stream(chunks(file));
            let status = self
                .client
                .put(self.url(key))
                .header(header::CONTENT_LENGTH, len)
                .body(body)
                .send()
                .await
                .map_err(failed)?
                .status();
            match status {
                s if s.is_success() => return Ok(()),
                StatusCode::CONFLICT | StatusCode::NOT_FOUND if !made_parents => {
                    made_parents = true;
                    self.make_parents(key).await?;
                }
                s => return Err((kind(s), format!("the server answered {s}"))),
            }
        }
    }

    /// MKCOL for each directory above `key`, outermost first; one that exists is fine.
    async fn make_parents(&self, key: &str) -> Result<(), Failed> {
        let mkcol = Method::from_bytes(b"MKCOL").expect("a valid method");
        let parts: Vec<&str> = key.split('/').collect();
        for depth in 1..parts.len() {
            let dir = parts[..depth].join("/");
            let status = self
                .client
                .request(mkcol.clone(), format!("{}/", self.url(&dir)))
                .send()
                .await
                .map_err(failed)?
                .status();
            if !(status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED) {
                return Err((
                    kind(status),
                    format!("MKCOL {dir}/: the server answered {status}"),
                ));
            }
        }
        Ok(())
    }
}

/// The file in pieces of 256 KiB, read as the body is sent.
fn chunks(
    file: std::fs::File,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0; 256 << 10];
        match file.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn kind(status: StatusCode) -> FailKind {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FailKind::Denied,
        StatusCode::NOT_FOUND => FailKind::NotFound,
        _ => FailKind::Other,
    }
}

fn failed(e: reqwest::Error) -> Failed {
    let kind = if e.is_connect() || e.is_timeout() {
        FailKind::Unreachable
    } else {
        FailKind::Other
    };
    // Without the URL: it may carry a user name.
    (kind, e.without_url().to_string())
}
