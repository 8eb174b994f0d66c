//! Remote URLs: `s3://BUCKET[/PREFIX]`, `http(s)://HOST[:PORT][/PATH]` and `file:///DIR`.

use std::{fmt, path::PathBuf, str::FromStr};

/// Where a remote is.
#[derive(Clone, PartialEq, Eq)]
pub enum RemoteUrl {
    /// An S3 bucket and a key prefix (no leading or trailing slash; may be empty). Endpoint,
    /// region and credentials come from the environment and the AWS files.
    S3 { bucket: String, prefix: String },
    /// An HTTP or WebDAV root: GET reads; PUT, DELETE, COPY and PROPFIND write and list.
    /// `base` has no credentials and no trailing slash; `user` is `user:password` from the URL.
    Http { base: String, user: Option<String> },
    /// A directory (a shared mount).
    File { dir: PathBuf },
}

/// Why a remote URL was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("remote URL {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl FromStr for RemoteUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<RemoteUrl, UrlError> {
        let err = |reason: &str| UrlError {
            url: redact(url),
            reason: reason.to_owned(),
        };
        if url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(err("contains spaces or control characters"));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            err("expected s3://BUCKET/PREFIX, http(s)://HOST/PATH or file:///DIR")
        })?;
        match scheme {
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.contains('@') {
                    return Err(err(
                        "credentials do not go in s3:// URLs (the URL is stored and shown); set \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use ~/.aws/credentials",
                    ));
                }
                let valid =
                    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c);
                if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
                    return Err(err(
                        "the bucket name must be 3-63 lower-case letters, digits, '-' or '.'",
                    ));
                }
                let prefix = clean_prefix(prefix)
                    .ok_or_else(|| err("the prefix has an empty, '.' or '..' segment"))?;
                Ok(RemoteUrl::S3 {
                    bucket: bucket.to_owned(),
                    prefix,
                })
            }
            "http" | "https" => {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let (user, host) = match authority.rsplit_once('@') {
                    Some((user, host)) => (Some(user.to_owned()), host),
                    None => (None, authority),
                };
                if host.is_empty() {
                    return Err(err("no host"));
                }
                if url.contains(['?', '#']) {
                    return Err(err("queries and fragments are not supported"));
                }
                let path = clean_prefix(path)
                    .ok_or_else(|| err("the path has an empty, '.' or '..' segment"))?;
                let mut base = format!("{scheme}://{host}");
                if !path.is_empty() {
                    base.push('/');
                    base.push_str(&path);
                }
                Ok(RemoteUrl::Http { base, user })
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(err("file URLs name an absolute directory: file:///DIR"));
                }
                let dir = PathBuf::from(rest);
                if dir
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(err("the directory has a '..' segment"));
                }
                Ok(RemoteUrl::File { dir })
            }
            other => Err(err(&format!(
                "unknown scheme {other:?}: use s3://, http://, https:// or file://"
            ))),
        }
    }
}

/// `url` with the password (or, without a `user:` part, all of the user information) replaced
/// by `***`: what a message may show of a URL someone typed. Works on anything, parsed or not.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let name = user.split_once(':').map_or("", |(n, _)| n);
            let shown = if name.is_empty() {
                "***".to_owned()
            } else {
                format!("{name}:***")
            };
            format!("{scheme}://{shown}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A key prefix without empty, `.` or `..` segments and without a trailing slash.
fn clean_prefix(prefix: &str) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Some(String::new());
    }
    prefix
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != "..")
        .then(|| prefix.to_owned())
}

/// The URL without a password, for messages and listings.
impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RemoteUrl::Http { base, user } => match (user, base.split_once("://")) {
                (Some(user), Some((scheme, rest))) => {
                    let name = user.split_once(':').map_or(user.as_str(), |(n, _)| n);
                    write!(f, "{scheme}://{name}:***@{rest}")
                }
                _ => f.write_str(base),
            },
            RemoteUrl::File { dir } => write!(f, "file://{}", dir.display()),
        }
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({self})")
    }
}

impl RemoteUrl {
    /// The URL as given (with any password), for the configuration file.
    pub fn to_config_string(&self) -> String {
        match self {
            RemoteUrl::Http {
                base,
                user: Some(user),
            } => match base.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{user}@{rest}"),
                None => base.clone(),
            },
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_refused_url_shows_a_secret() {
        for url in [
            "s3://AKIAEXAMPLE:s3cr3t-VALUE@bucket/prefix",
            "s3://s3cr3t-VALUE@bucket",
            "http://user:s3cr3t-VALUE@host/pa th",
            "ftp://user:s3cr3t-VALUE@host/x",
            "https://user:s3cr3t-VALUE@/x",
        ] {
            let e = url.parse::<RemoteUrl>().unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(redact("http://u:p@h/x"), "http://u:***@h/x");
        assert_eq!(redact("s3://b/p"), "s3://b/p");
    }

    #[test]
    fn parses_the_three_kinds() {
        let u: RemoteUrl = "s3://my-bucket/team/envs/".parse().unwrap();
        assert_eq!(
            u,
            RemoteUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/envs".into()
            }
        );
        assert_eq!(u.to_string(), "s3://my-bucket/team/envs");
        let u: RemoteUrl = "https://bob:secret@cache.example:8443/envs"
            .parse()
            .unwrap();
        assert_eq!(u.to_string(), "https://bob:***@cache.example:8443/envs");
        assert_eq!(
            u.to_config_string(),
            "https://bob:secret@cache.example:8443/envs"
        );
        let u: RemoteUrl = "file:///srv/envs".parse().unwrap();
        assert_eq!(
            u,
            RemoteUrl::File {
                dir: "/srv/envs".into()
            }
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "",
            "bucket/prefix",
            "ftp://x/y",
            "s3://A/x",
            "s3://ok-bucket/a/../b",
            "s3://ok-bucket/a//b",
            "http:///path",
            "http://h/x?y=1",
            "file://relative/dir",
            "file:///a/../b",
            "s3://ok bucket",
        ] {
            assert!(bad.parse::<RemoteUrl>().is_err(), "{bad}");
        }
    }
}
