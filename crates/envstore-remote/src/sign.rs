//! Signed refs: ed25519 keys (through `ring`), named like Nix's binary cache keys.
//!
//! A secret key file is text: `envstore-secret-key 1`, `name <name>`, `pkcs8 <hex>`. A public
//! key is written `<name>:<64 hex digits>`; stores trust the ones listed in their config.

use std::{fmt, str::FromStr};

use ring::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};

use crate::{hex, unhex, valid_name};

const HEADER: &str = "envstore-secret-key 1";

/// Why a key was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// A key that signs refs.
pub struct SecretKey {
    name: String,
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public())
    }
}

/// A key that checks signatures: its name and its 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    pub bytes: [u8; 32],
}

impl SecretKey {
    /// A new random key called `name`.
    pub fn generate(name: &str) -> Result<SecretKey, KeyError> {
        if !valid_name(name) {
            return Err(KeyError(format!(
                "invalid key name {name:?}: use 1-64 of A-Z a-z 0-9 . _ -"
            )));
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KeyError("no random numbers from the operating system".into()))?;
        SecretKey::from_pkcs8(name, pkcs8.as_ref())
    }

    fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<SecretKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| KeyError(format!("not an ed25519 secret key: {e}")))?;
        Ok(SecretKey {
            name: name.to_owned(),
            pkcs8: pkcs8.to_vec(),
            pair,
        })
    }

    /// Reads a secret key file's text.
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(KeyError(format!(
                "not an envstore secret key (expected {HEADER:?})"
            )));
        }
        let (mut name, mut pkcs8) = (None, None);
        for line in lines {
            match line.split_once(' ') {
                Some(("name", v)) => name = Some(v),
                Some(("pkcs8", v)) => pkcs8 = unhex(v),
                _ => {}
            }
        }
        match (name, pkcs8) {
            (Some(name), Some(pkcs8)) if valid_name(name) => SecretKey::from_pkcs8(name, &pkcs8),
            _ => Err(KeyError(
                "the key file lacks a valid name or pkcs8 line".into(),
            )),
        }
    }

    pub fn to_text(&self) -> String {
        format!("{HEADER}\nname {}\npkcs8 {}\n", self.name, hex(&self.pkcs8))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            bytes: self
                .pair
                .public_key()
                .as_ref()
                .try_into()
                .expect("ed25519 public keys are 32 bytes"),
        }
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.pair
            .sign(message)
            .as_ref()
            .try_into()
            .expect("ed25519 signatures are 64 bytes")
    }
}

impl PublicKey {
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, hex(&self.bytes))
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        let bad = || {
            KeyError(format!(
                "invalid public key {s:?}: expected NAME:64 hex digits"
            ))
        };
        let (name, digits) = s.rsplit_once(':').ok_or_else(bad)?;
        let bytes = unhex(digits).ok_or_else(bad)?;
        if !valid_name(name) {
            return Err(bad());
        }
        Ok(PublicKey {
            name: name.to_owned(),
            bytes: bytes.try_into().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_checks() {
        let key = SecretKey::generate("ci-1").unwrap();
        let again = SecretKey::parse(&key.to_text()).unwrap();
        assert_eq!(again.public(), key.public());
        let public: PublicKey = key.public().to_string().parse().unwrap();
        let sig = again.sign(b"ref text");
        assert!(public.verify(b"ref text", &sig));
        assert!(!public.verify(b"ref text!", &sig));
        let other = SecretKey::generate("ci-1").unwrap().public();
        assert!(!other.verify(b"ref text", &sig));
        assert!("x:12".parse::<PublicKey>().is_err());
        assert!(SecretKey::parse("envstore-secret-key 1\nname a\npkcs8 00\n").is_err());
    }
}
