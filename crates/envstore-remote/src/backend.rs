//! [`Storage`] over the `object_store` crate: S3, HTTP/WebDAV and local directories, behind a
//! synchronous facade that owns a small tokio runtime.

use std::{
    collections::HashMap,
    ops::Range,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use object_store::{
    BackoffConfig, ClientOptions, CopyMode, CopyOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, WriteMultipart, aws::AmazonS3Builder, http::HttpBuilder,
    local::LocalFileSystem, path::Path as Key, prefix::PrefixStore,
};

use crate::webdav::StreamedPut;
use crate::{Counters, FailKind, Listed, RemoteError, RemoteUrl, Result, Storage, unhex};

/// How many transfers run at once.
const CONCURRENCY: usize = 8;
/// Files larger than this are uploaded in parts of `PART` bytes (S3's smallest part), one
/// in flight while the next fills: memory stays near two parts whatever the file's size.
const STREAM_PUT_OVER: u64 = 16 << 20;
const PART: usize = 5 << 20;
const PARTS_IN_FLIGHT: usize = 1;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("envstore-remote")
            .enable_all()
            .build()
            .expect("a tokio runtime (threads and an epoll instance)")
    })
}

#[derive(Debug)]
struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    describe: String,
    /// HTTP/WebDAV: create-if-absent is a PUT to a temporary name and a COPY with
    /// `Overwrite: F`, since nginx ignores `If-None-Match` on PUT.
    copy_to_create: bool,
    /// HTTP/WebDAV: large files are PUT from a stream (object_store sends only from memory).
    streamed: Option<StreamedPut>,
    requests: AtomicU64,
    down: AtomicU64,
    up: AtomicU64,
}

/// How long a remote may take to accept a connection, and to send each next piece of an
/// answer (the first byte included), before the call fails as unreachable:
/// `ENVSTORE_REMOTE_TIMEOUT` seconds, default 10. A remote that accepts and never answers
/// costs at most about three times this per call (with the retries), and then is not asked
/// again by this process for [`SKIP_FOR`].
pub fn idle_timeout() -> Duration {
    std::env::var("ENVSTORE_REMOTE_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(10), |s| {
            Duration::from_secs_f64(s.min(86_400.0))
        })
}

/// After a remote failed as unreachable, calls to it fail at once for this long: one dead
/// cache server costs a command one time-out, not one per call (fall-through, ensure).
pub const SKIP_FOR: Duration = Duration::from_secs(300);

/// Remotes (by their description) that did not answer, and when.
fn unreachable() -> &'static Mutex<HashMap<String, Instant>> {
    static FAILED: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    FAILED.get_or_init(Default::default)
}

/// Opens the remote at `url`. Nothing is contacted yet.
pub fn open(url: &RemoteUrl) -> Result<Box<dyn Storage>> {
    // TLS through rustls with ring; the client is built here, so the provider must be set first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let describe = url.to_string();
    let fail = |e: object_store::Error| RemoteError {
        remote: describe.clone(),
        op: "open",
        key: String::new(),
        kind: FailKind::Other,
        message: e.to_string(),
    };
    let idle = idle_timeout();
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        // No retry starts after this: with the idle bound, a silent remote costs a call at
        // most about three idle periods.
        retry_timeout: idle * 2,
    };
    // Connect and every read (the first byte of an answer too) are bounded by `idle`; a whole
    // transfer, which may be large and slow but alive, by a generous total.
    let client = ClientOptions::new()
        .with_connect_timeout(idle.min(Duration::from_secs(5)))
        .with_read_timeout(idle)
        .with_timeout(Duration::from_secs(3600));
    let mut streamed = None;
    let (store, copy_to_create): (Arc<dyn ObjectStore>, bool) = match url {
        RemoteUrl::S3 { bucket, prefix } => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry);
            let mut client = client;
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok();
            if endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
            {
                client = client.with_allow_http(true);
            }
            for (key, value) in aws_files() {
                builder = builder.with_config(key, value);
            }
            let s3 = builder.with_client_options(client).build().map_err(fail)?;
            (prefixed(Arc::new(s3), prefix), false)
        }
        RemoteUrl::Http { base, user } => {
            let mut client = client.with_allow_http(true);
            let mut authorization = None;
            if let Some(user) = user {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.encode(percent_decode(user));
                let mut headers = object_store::HeaderMap::new();
                let value: object_store::HeaderValue =
                    format!("Basic {token}").parse().map_err(|_| RemoteError {
                        remote: describe.clone(),
                        op: "open",
                        key: String::new(),
                        kind: FailKind::Other,
                        message: "the user name or password cannot be sent in a header".into(),
                    })?;
                headers.insert("authorization", value.clone());
                client = client.with_default_headers(headers);
                authorization = Some(value);
            }
            streamed = Some(
                StreamedPut::new(base, authorization, idle).map_err(|message| RemoteError {
                    remote: describe.clone(),
                    op: "open",
                    key: String::new(),
                    kind: FailKind::Other,
                    message,
                })?,
            );
            let http = HttpBuilder::new()
                .with_url(base.clone())
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(fail)?;
            (Arc::new(http), true)
        }
        RemoteUrl::File { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| RemoteError {
                remote: describe.clone(),
                op: "create",
                key: dir.display().to_string(),
                kind: FailKind::Other,
                message: e.to_string(),
            })?;
            let local = LocalFileSystem::new_with_prefix(dir).map_err(fail)?;
            (Arc::new(local), false)
        }
    };
    Ok(Box::new(ObjectStorage {
        store,
        describe,
        copy_to_create,
        streamed,
        requests: AtomicU64::new(0),
        down: AtomicU64::new(0),
        up: AtomicU64::new(0),
    }))
}

fn prefixed(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// `%XX` escapes decoded (user names and passwords in URLs are percent-encoded).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(unhex)
        {
            out.push(b[0]);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// What a missing S3 bucket's 404 says, and what a message about it says instead.
const NO_BUCKET_CODE: &str = "NoSuchBucket";
const NO_BUCKET: &str = "the bucket does not exist";

/// A 404 for the bucket, not for the key: an error, never "not there".
fn no_bucket(e: &object_store::Error) -> bool {
    format!("{e:?}").contains(NO_BUCKET_CODE)
}

fn classify(e: &object_store::Error) -> FailKind {
    if no_bucket(e) {
        return FailKind::Other;
    }
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => FailKind::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => FailKind::Denied,
        other => {
            let text = format!("{other:?}").to_ascii_lowercase();
            if [
                "connect",
                "timed out",
                "timeout",
                "dns error",
                "connection refused",
                "connection reset",
            ]
            .iter()
            .any(|w| text.contains(w))
            {
                FailKind::Unreachable
            } else if text.contains("forbidden")
                || text.contains("signaturedoesnotmatch")
                || text.contains("accessdenied")
                || text.contains("401")
            {
                FailKind::Denied
            } else {
                FailKind::Other
            }
        }
    }
}

impl ObjectStorage {
    /// GETs `key` and hands its body to `sink` piece by piece, with each piece's offset;
    /// returns its length, or `None` when there is none. An object over `limit` bytes is
    /// refused, by its announced length before any byte is read, and by what arrives.
    fn get_with(
        &self,
        key: &str,
        limit: u64,
        mut sink: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> Result<Option<u64>> {
        let path = self.key(key)?;
        // Ok(Ok(len)), Ok(Err(Ok(size))): over the limit, Ok(Err(Err(e))): the sink failed.
        type Got = std::result::Result<u64, std::result::Result<u64, std::io::Error>>;
        let result: std::result::Result<Got, object_store::Error> = runtime().block_on(async {
            let got = self.store.get(&path).await?;
            if got.meta.size > limit {
                return Ok(Err(Ok(got.meta.size)));
            }
            let mut body = got.into_stream();
            let mut received = 0u64;
            while let Some(bytes) = body.next().await {
                let bytes = bytes?;
                if received + bytes.len() as u64 > limit {
                    return Ok(Err(Ok(received + bytes.len() as u64)));
                }
                if let Err(e) = sink(received, &bytes) {
                    return Ok(Err(Err(e)));
                }
                received += bytes.len() as u64;
            }
            Ok(Ok(received))
        });
        match result {
            Ok(Ok(len)) => {
                self.count(len, 0);
                Ok(Some(len))
            }
            Ok(Err(Ok(size))) => {
                self.count(0, 0);
                Err(self.too_large(key, size, limit))
            }
            Ok(Err(Err(e))) => Err(RemoteError {
                remote: self.describe.clone(),
                op: "read",
                key: key.to_owned(),
                kind: FailKind::Other,
                message: format!("cannot write what it sent to a local file: {e}"),
            }),
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => {
                self.count(0, 0);
                Ok(None)
            }
            Err(e) => Err(self.err("read", key, e)),
        }
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> RemoteError {
        let kind = classify(&e);
        if kind == FailKind::Unreachable {
            unreachable()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.describe.clone(), Instant::now());
        }
        RemoteError {
            remote: self.describe.clone(),
            op,
            key: key.to_owned(),
            kind,
            message: if no_bucket(&e) {
                format!("{NO_BUCKET} (create it, or check the URL's bucket name)")
            } else {
                s3_said(&one_line(&e)).unwrap_or_else(|| one_line(&e))
            },
        }
    }

    /// Fails at once when this remote did not answer a moment ago (see [`SKIP_FOR`]).
    fn check_reachable(&self, op: &'static str, key: &str) -> Result<()> {
        let failed = unreachable()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.describe)
            .copied();
        match failed {
            Some(at) if at.elapsed() < SKIP_FOR => Err(RemoteError {
                remote: self.describe.clone(),
                op,
                key: key.to_owned(),
                kind: FailKind::Unreachable,
                message: format!(
                    "not asked again: it did not answer {}s ago",
                    at.elapsed().as_secs()
                ),
            }),
            _ => Ok(()),
        }
    }

    fn count(&self, down: u64, up: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.down.fetch_add(down, Ordering::Relaxed);
        self.up.fetch_add(up, Ordering::Relaxed);
    }

    fn key(&self, key: &str) -> Result<Key> {
        // Every call names its key first: the one place to refuse calls to a dead remote.
        self.check_reachable("reach", key)?;
        Key::parse(key).map_err(|e| RemoteError {
            remote: self.describe.clone(),
            op: "name",
            key: key.to_owned(),
            kind: FailKind::Other,
            message: e.to_string(),
        })
    }
}

/// An S3 error answer's status, code and message (`403 Forbidden: AccessDenied: Access
/// Denied.`) instead of the whole XML document and the client's wording around it.
fn s3_said(text: &str) -> Option<String> {
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].trim().to_owned())
    };
    let code = between("<Code>", "</Code>")?;
    let message = between("<Message>", "</Message>").unwrap_or_default();
    let status = text
        .find("status code: ")
        .map(|i| &text[i + "status code: ".len()..])
        .and_then(|rest| rest.split(':').next())
        .map(|s| format!("{}: ", s.trim()))
        .unwrap_or_default();
    Some(format!("{status}{code}: {message}"))
}

/// The error and its causes on one line, without the retry noise's line breaks.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Storage for ObjectStorage {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let mut data = Vec::new();
        let got = self.get_with(key, limit, |_, bytes| {
            data.extend_from_slice(bytes);
            Ok(())
        })?;
        Ok(got.map(|_| data))
    }

    fn get_many(&self, keys: &[String], limit: u64) -> Result<Vec<Option<Vec<u8>>>> {
        // The blocking calls run on a few threads of their own: simple, and each uses the
        // shared runtime.
        std::thread::scope(|scope| {
            let chunks: Vec<_> = keys
                .chunks(keys.len().div_ceil(CONCURRENCY).max(1))
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|k| self.get(k, limit))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(keys.len());
            for c in chunks {
                out.extend(c.join().expect("a get thread panicked")?);
            }
            Ok(out)
        })
    }

    fn get_ranges_into(
        &self,
        requests: &[(String, Range<u64>)],
        file: &std::fs::File,
        at: u64,
    ) -> Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut placed = Vec::with_capacity(requests.len());
        let mut offset = at;
        for (k, r) in requests {
            placed.push((self.key(k)?, k.as_str(), r.clone(), offset));
            offset += r.end - r.start;
        }
        let short = |key: &str, message: String| RemoteError {
            remote: self.describe.clone(),
            op: "read",
            key: key.to_owned(),
            kind: FailKind::Other,
            message,
        };
        runtime().block_on(async {
            futures::stream::iter(placed)
                .map(|(path, key, range, mut offset)| async move {
                    let want = range.end - range.start;
                    let options = object_store::GetOptions {
                        range: Some(range.into()),
                        ..Default::default()
                    };
                    let got = self
                        .store
                        .get_opts(&path, options)
                        .await
                        .map_err(|e| self.err("read", key, e))?;
                    let mut body = got.into_stream();
                    let mut received = 0u64;
                    while let Some(bytes) = body.next().await {
                        let bytes = bytes.map_err(|e| self.err("read", key, e))?;
                        received += bytes.len() as u64;
                        if received > want {
                            break;
                        }
                        file.write_all_at(&bytes, offset).map_err(|e| {
                            short(
                                key,
                                format!("cannot write what it sent to a local file: {e}"),
                            )
                        })?;
                        offset += bytes.len() as u64;
                    }
                    self.count(received, 0);
                    if received != want {
                        return Err(short(
                            key,
                            format!("asked for {want} bytes, got {received}"),
                        ));
                    }
                    Ok(())
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .map(drop)
        })
    }

    fn get_into(&self, key: &str, file: &std::fs::File, limit: u64) -> Result<Option<u64>> {
        use std::os::unix::fs::FileExt as _;
        self.get_with(key, limit, |at, bytes| file.write_all_at(bytes, at))
    }

    fn head_many(&self, keys: &[String]) -> Result<Vec<Option<Listed>>> {
        let paths = keys
            .iter()
            .map(|k| Ok((self.key(k)?, k.as_str())))
            .collect::<Result<Vec<_>>>()?;
        runtime().block_on(async {
            futures::stream::iter(paths)
                .map(|(path, key)| async move {
                    let result = self.store.head(&path).await;
                    self.count(0, 0);
                    match result {
                        Ok(meta) => Ok(Some(Listed {
                            name: meta.location.filename().unwrap_or_default().to_owned(),
                            size: meta.size,
                            modified: meta.last_modified.timestamp(),
                        })),
                        Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => Ok(None),
                        Err(e) => Err(self.err("look up", key, e)),
                    }
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await
        })
    }

    fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let path = self.key(key)?;
        let len = data.len() as u64;
        runtime()
            .block_on(self.store.put(&path, PutPayload::from(data)))
            .map_err(|e| self.err("write", key, e))?;
        self.count(0, len);
        Ok(())
    }

    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        let unreadable = |e: std::io::Error| RemoteError {
            remote: self.describe.clone(),
            op: "write",
            key: key.to_owned(),
            kind: FailKind::Other,
            message: format!("cannot read {}: {e}", path.display()),
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let len = file.metadata().map_err(unreadable)?.len();
        if len <= STREAM_PUT_OVER {
            let mut data = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(&mut file, &mut data).map_err(unreadable)?;
            return self.put(key, data);
        }
        // HTTP (WebDAV) has no multipart upload: one PUT whose body streams from the file.
        if let Some(streamed) = &self.streamed {
            self.key(key)?;
            return match runtime().block_on(streamed.put_file(key, path, len)) {
                Ok(()) => {
                    self.count(0, len);
                    Ok(())
                }
                Err((kind, message)) => Err(RemoteError {
                    remote: self.describe.clone(),
                    op: "write",
                    key: key.to_owned(),
                    kind,
                    message,
                }),
            };
        }
        let dest = self.key(key)?;
        let result: std::result::Result<std::io::Result<()>, object_store::Error> = runtime()
            .block_on(async {
                let upload = self.store.put_multipart(&dest).await?;
                let mut parts = WriteMultipart::new_with_chunk_size(upload, PART);
                let mut buf = vec![0; 256 << 10];
                loop {
                    let n = match std::io::Read::read(&mut file, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            let _ = parts.abort().await;
                            return Ok(Err(e));
                        }
                    };
                    parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    parts.write(&buf[..n]);
                }
                parts.finish().await?;
                Ok(Ok(()))
            });
        match result {
            Ok(Ok(())) => {
                self.count(0, len);
                Ok(())
            }
            Ok(Err(e)) => Err(unreadable(e)),
            Err(e) => Err(self.err("write", key, e)),
        }
    }

    fn put_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool> {
        let path = self.key(key)?;
        let len = data.len() as u64;
        if self.copy_to_create {
            // PUT to a unique name beside it, then COPY with `Overwrite: F`.
            let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
            let mut nonce = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(
                |_| {
                    self.err(
                        "write",
                        key,
                        object_store::Error::NotImplemented {
                            operation: "random numbers".into(),
                            implementer: "ring".into(),
                        },
                    )
                },
            )?;
            let tmp_key = if dir.is_empty() {
                format!(".tmp-{}-{name}", crate::hex(&nonce))
            } else {
                format!("{dir}/.tmp-{}-{name}", crate::hex(&nonce))
            };
            let tmp = self.key(&tmp_key)?;
            self.put(&tmp_key, data)?;
            let copied = runtime().block_on(self.store.copy_opts(
                &tmp,
                &path,
                CopyOptions::new().with_mode(CopyMode::Create),
            ));
            self.count(0, 0);
            let _ = self.delete(&tmp_key);
            return match copied {
                Ok(()) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => Ok(false),
                Err(e) => Err(self.err("create", key, e)),
            };
        }
        let opts = PutOptions::from(PutMode::Create);
        let result = runtime().block_on(self.store.put_opts(&path, PutPayload::from(data), opts));
        self.count(0, len);
        match result {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err("create", key, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let path = self.key(dir)?;
        let listed = runtime()
            .block_on(self.store.list_with_delimiter(Some(&path)))
            .map_err(|e| self.err("list", dir, e));
        self.count(0, 0);
        let listed = match listed {
            Ok(listed) => listed,
            // A directory that was never written is an empty one.
            Err(e) if e.is_not_found() && !e.message.contains(NO_BUCKET) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_owned();
                Some(Listed {
                    name,
                    size: meta.size,
                    modified: meta.last_modified.timestamp(),
                })
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.key(key)?;
        let result = runtime().block_on(self.store.delete(&path));
        self.count(0, 0);
        match result {
            Ok(()) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_down: self.down.load(Ordering::Relaxed),
            bytes_up: self.up.load(Ordering::Relaxed),
        }
    }
}

impl ObjectStorage {
    fn too_large(&self, key: &str, size: u64, limit: u64) -> RemoteError {
        RemoteError {
            remote: self.describe.clone(),
            op: "read",
            key: key.to_owned(),
            kind: FailKind::TooLarge,
            message: format!("{size} bytes, more than the {limit} allowed for it"),
        }
    }
}

/// Settings from the AWS shared files (`~/.aws/credentials` and `~/.aws/config`, or the files
/// `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name) for the profile `AWS_PROFILE` (else
/// `default`), for whatever the environment does not set.
fn aws_files() -> Vec<(object_store::aws::AmazonS3ConfigKey, String)> {
    use object_store::aws::AmazonS3ConfigKey as K;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let mut settings = Vec::new();
    let sources = [
        (
            file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            profile.clone(),
        ),
        (
            file("AWS_CONFIG_FILE", "config"),
            if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            },
        ),
    ];
    for (path, section) in sources {
        let Some(text) = path.and_then(|p| read_small(&p)) else {
            continue;
        };
        for (key, value) in crate::config::ini_section(&text, &section) {
            let (config, var) = match key.as_str() {
                "aws_access_key_id" => (K::AccessKeyId, "AWS_ACCESS_KEY_ID"),
                "aws_secret_access_key" => (K::SecretAccessKey, "AWS_SECRET_ACCESS_KEY"),
                "aws_session_token" => (K::Token, "AWS_SESSION_TOKEN"),
                "region" => (K::Region, "AWS_REGION"),
                "endpoint_url" => (K::Endpoint, "AWS_ENDPOINT_URL"),
                _ => continue,
            };
            if std::env::var_os(var).is_none() {
                settings.push((config, value));
            }
        }
    }
    settings
}

/// A small text file, or `None` (missing, unreadable, larger than 1 MiB, not UTF-8).
fn read_small(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}
