//! X25519 recipient keys and their ids. Low-order public keys (whose shared secret is all
//! zeros, RFC 7748 §6.1) are refused wherever a key enters: directory, envelope, wrap.

use super::EnvelopeError;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// First 8 bytes of SHA-256 over the public key: names a key in headers and the directory.
/// A lookup hint, not a security claim: which key opened a message is proven by the
/// cryptography, and only a certificate holder can put a key in the directory, so 8 bytes
/// (no accidental collision among the few keys in play) keep every envelope short.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

pub const KEY_ID_LEN: usize = 8;

impl KeyId {
    pub fn of(public: &[u8; 32]) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, public);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Whether `public` is a low-order point: X25519 with any scalar gives all zeros.
pub fn is_low_order(public: &[u8; 32]) -> bool {
    // A fixed non-zero scalar suffices: the result is zero for every scalar iff the point
    // has small order (clamping clears the cofactor bits).
    let probe = StaticSecret::from([0x42u8; 32]);
    !probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .was_contributory()
}

/// A validated X25519 public key (never low-order) with its id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    kid: KeyId,
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PublicKey, EnvelopeError> {
        if is_low_order(&bytes) {
            return Err(EnvelopeError::LowOrderKey);
        }
        Ok(PublicKey {
            bytes,
            kid: KeyId::of(&bytes),
        })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn kid(&self) -> KeyId {
        self.kid
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.kid)
    }
}

/// A service's X25519 key pair. The secret is zeroized on drop and never printed.
pub struct SecretKeyPair {
    secret: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl SecretKeyPair {
    pub fn generate() -> Result<SecretKeyPair, EnvelopeError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(secret.as_mut())
            .map_err(|_| EnvelopeError::Random)?;
        SecretKeyPair::from_secret(*secret)
    }

    pub fn from_secret(secret: [u8; 32]) -> Result<SecretKeyPair, EnvelopeError> {
        let public = x25519_dalek::PublicKey::from(&StaticSecret::from(secret)).to_bytes();
        Ok(SecretKeyPair {
            secret: Zeroizing::new(secret),
            public: PublicKey::from_bytes(public)?,
        })
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// A second handle on the same key (a sealer and an opener both need one). Named, not
    /// `Clone`, so copies of secrets are deliberate.
    pub fn duplicate(&self) -> SecretKeyPair {
        SecretKeyPair {
            secret: Zeroizing::new(*self.secret),
            public: self.public,
        }
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for SecretKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKeyPair({}, secret redacted)", self.public.kid)
    }
}
