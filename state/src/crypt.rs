//! Client-side encryption of stored documents (the state, and plan files): a [`Sealer`]
//! turns bytes into a sealed envelope and back.
//!
//! Every [`seal`](Sealer::seal) encrypts with AES-256-GCM under a fresh random data key,
//! which is stored wrapped:
//! - by a key derived from a passphrase with argon2id ([`KeySource::Passphrase`]): the
//!   derivation costs tens of milliseconds, so a sealer derives once per salt and keeps
//!   the result; it makes one salt when it is built and seals all its writes with it;
//! - by AWS KMS ([`KeySource::AwsKms`], feature `kms`): one `GenerateDataKey` per write,
//!   one `Decrypt` per read, on the sealer's own runtime thread (as the S3 backend).
//!
//! The envelope is a small JSON document, so that tools and people can see what protects
//! a file without being able to read it:
//!
//! ```json
//! {
//!   "flyteinfra_sealed": 1,
//!   "key_provider": "passphrase",
//!   "key_id": "FLYTEINFRA_STATE_PASSPHRASE",
//!   "kdf": {"alg": "argon2id", "m_kib": 19456, "t": 2, "p": 1, "salt": "<base64>"},
//!   "wrapped_key": "<base64>",
//!   "key_nonce": "<base64>",
//!   "nonce": "<base64>",
//!   "ciphertext": "<base64>"
//! }
//! ```
//!
//! `key_id` names where the key comes from (the passphrase's environment variable, or the
//! KMS key id as configured), never the key. `kdf` and `key_nonce` are there for a
//! passphrase only. Every header field is bound into the associated data of the
//! encryption (the data key's too, for a passphrase), so changing any of them makes the
//! file fail to open, as does changing the ciphertext.
//!
//! A wrong or missing key is one [`StateError::Sealed`], naming the file, the key provider
//! and key id, and what went wrong as far as it can be told (AES-GCM cannot tell a wrong
//! key from a changed file).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flyteinfra_core::Sensitive;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::StateError;

/// The envelope format this build writes and reads (`flyteinfra_sealed`).
pub const SEALED_FORMAT: u32 = 1;

/// argon2id memory cost in KiB (19 MiB), time cost and parallelism: OWASP's minimum for
/// argon2id, the parameters every passphrase-sealed file is written with.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// argon2id passes over memory.
pub const ARGON2_T: u32 = 2;
/// argon2id lanes.
pub const ARGON2_P: u32 = 1;

/// `key_provider` of a passphrase-sealed file.
const PASSPHRASE: &str = "passphrase";
/// `key_provider` of a file sealed with an AWS KMS key.
const AWS_KMS: &str = "aws_kms";
/// The config section errors about the key setting name.
const CONFIG: &str = "state.encryption";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const SALT_LEN: usize = 16;
/// Derived keys a sealer keeps (its own salt, and those of files it opened).
const KEK_CACHE: usize = 8;

/// The most a file's header may ask of argon2id: a changed header must not make a read
/// allocate gigabytes or run for minutes.
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 16;
const MAX_P: u32 = 16;

/// Where the key that protects stored documents comes from.
///
/// `Debug` never shows the passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A key derived with argon2id from a passphrase.
    Passphrase {
        /// The environment variable the passphrase is read from: recorded in each sealed
        /// file as its `key_id`, and named in errors.
        env: String,
        /// The passphrase.
        passphrase: Sensitive<String>,
    },
    /// Data keys from AWS KMS, wrapped by a KMS key (needs the `kms` feature).
    AwsKms {
        /// The KMS key: key id, key ARN, alias name (`alias/flyteinfra-state`) or alias ARN.
        key_id: String,
        /// The key's region; empty for the region of the standard AWS chain.
        region: String,
    },
}

impl KeySource {
    /// A passphrase read from the environment variable `env`. An unset (or non-UTF-8)
    /// variable gives an empty passphrase, which [`Sealer::new`] refuses with a message
    /// naming the variable.
    pub fn passphrase_from_env(env: impl Into<String>) -> KeySource {
        let env = env.into();
        let passphrase = if env.is_empty() {
            String::new()
        } else {
            std::env::var(&env).unwrap_or_default()
        };
        KeySource::Passphrase {
            env,
            passphrase: Sensitive::new(passphrase),
        }
    }

    /// `passphrase` or `aws_kms`, as in a sealed file's `key_provider`.
    pub fn provider(&self) -> &'static str {
        match self {
            KeySource::Passphrase { .. } => PASSPHRASE,
            KeySource::AwsKms { .. } => AWS_KMS,
        }
    }

    /// The environment variable or the KMS key id, as in a sealed file's `key_id`.
    pub fn key_id(&self) -> &str {
        match self {
            KeySource::Passphrase { env, .. } => env,
            KeySource::AwsKms { key_id, .. } => key_id,
        }
    }
}

/// Seals and opens documents with one [`KeySource`]. Clones share the derived keys (and,
/// for KMS, the client and its runtime thread). `Debug` shows the provider and key id
/// only.
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<Inner>,
}

enum Inner {
    Passphrase(PassphraseKey),
    #[cfg(feature = "kms")]
    Kms(kms::KmsKey),
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_provider", &self.provider())
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with the key of `source`. For a passphrase, this makes the salt of this
    /// sealer's writes (the key is derived at the first seal); for KMS, it starts the
    /// client (the key is first used at the first seal or open).
    ///
    /// # Errors
    /// [`StateError::Setup`] (naming `state.encryption`) when the passphrase is empty or
    /// its variable unset, when the OS random generator fails, when the client thread
    /// cannot start, or for KMS in a build without the `kms` feature.
    pub fn new(source: KeySource) -> Result<Sealer, StateError> {
        let inner = match source {
            KeySource::Passphrase { env, passphrase } => {
                Inner::Passphrase(PassphraseKey::new(env, passphrase)?)
            }
            #[cfg(feature = "kms")]
            KeySource::AwsKms { key_id, region } => Inner::Kms(kms::KmsKey::new(key_id, region)?),
            #[cfg(not(feature = "kms"))]
            KeySource::AwsKms { key_id, .. } => {
                return Err(setup(format!(
                    "AWS KMS key `{key_id}`: this build of flyteinfra has no AWS KMS support"
                )));
            }
        };
        Ok(Sealer {
            inner: Arc::new(inner),
        })
    }

    /// A sealer with the KMS key `key_id` and the SDK settings of `config` (an explicit
    /// endpoint and static credentials: tests, emulators); the region is `config`'s.
    ///
    /// # Errors
    /// [`StateError::Setup`] when the client thread cannot start.
    #[cfg(feature = "kms")]
    pub fn kms_with_sdk_config(
        key_id: impl Into<String>,
        config: &aws_config::SdkConfig,
    ) -> Result<Sealer, StateError> {
        Ok(Sealer {
            inner: Arc::new(Inner::Kms(kms::KmsKey::with_sdk_config(
                key_id.into(),
                config,
            )?)),
        })
    }

    /// `passphrase` or `aws_kms`.
    pub fn provider(&self) -> &'static str {
        match &*self.inner {
            Inner::Passphrase(_) => PASSPHRASE,
            #[cfg(feature = "kms")]
            Inner::Kms(_) => AWS_KMS,
        }
    }

    /// The passphrase's environment variable, or the KMS key id as configured.
    pub fn key_id(&self) -> &str {
        match &*self.inner {
            Inner::Passphrase(p) => &p.env,
            #[cfg(feature = "kms")]
            Inner::Kms(k) => k.key_id(),
        }
    }

    /// `plaintext` sealed under a new data key and nonce: the envelope's bytes (pretty
    /// JSON ending in a newline). `what` is the file or object it is for, named in errors.
    ///
    /// # Errors
    /// [`StateError::Seal`] when KMS refuses or cannot be reached (naming the key id), or
    /// the OS random generator fails.
    pub fn seal(&self, plaintext: &[u8], what: &Path) -> Result<Vec<u8>, StateError> {
        let seal_error = |reason: String| StateError::Seal {
            path: what.to_path_buf(),
            reason,
        };
        let (mut envelope, data_key) = match &*self.inner {
            Inner::Passphrase(p) => p.new_data_key().map_err(seal_error)?,
            #[cfg(feature = "kms")]
            Inner::Kms(k) => {
                let (wrapped, data_key) = k.generate_data_key().map_err(seal_error)?;
                let envelope = Envelope::header(AWS_KMS, k.key_id(), None, &wrapped, None);
                (envelope, data_key)
            }
        };
        let nonce = random::<NONCE_LEN>().map_err(seal_error)?;
        let ciphertext = encrypt(&data_key, &nonce, plaintext, &envelope.body_aad())
            .map_err(|()| seal_error("AES-GCM refused to encrypt".to_string()))?;
        envelope.nonce = B64.encode(nonce);
        envelope.ciphertext = B64.encode(ciphertext);
        let mut out = serde_json::to_vec_pretty(&envelope).expect("an envelope serializes");
        out.push(b'\n');
        Ok(out)
    }

    /// The plaintext of the sealed document `stored`, read from `what` (named in errors).
    /// A document that is not sealed (see [`is_sealed`]) is an error too: callers that
    /// accept plain documents check [`is_sealed`] first.
    ///
    /// # Errors
    /// [`StateError::Sealed`], naming the key provider and key id the file records and why
    /// it does not open: a wrong passphrase (or a changed file: AES-GCM cannot tell them
    /// apart), another KMS key, a KMS key that is missing or not allowed, a file sealed
    /// with another provider than this sealer's, a damaged or changed file, or a file
    /// sealed by a newer flyteinfra.
    pub fn open(&self, stored: &[u8], what: &Path) -> Result<Vec<u8>, StateError> {
        let envelope = match Envelope::parse(stored) {
            Ok(e) => e,
            Err(reason) => {
                let (provider, key_id) = sealed_header(stored)
                    .unwrap_or_else(|| (self.provider().into(), self.key_id().into()));
                return Err(StateError::Sealed {
                    path: what.to_path_buf(),
                    provider,
                    key_id,
                    reason,
                });
            }
        };
        let sealed_error = |reason: String| StateError::Sealed {
            path: what.to_path_buf(),
            provider: envelope.key_provider.clone(),
            key_id: envelope.key_id.clone(),
            reason,
        };
        if envelope.key_provider != self.provider() {
            return Err(sealed_error(self.provider_mismatch(&envelope.key_provider)));
        }
        let data_key = match &*self.inner {
            Inner::Passphrase(p) => p.open_data_key(&envelope).map_err(sealed_error)?,
            #[cfg(feature = "kms")]
            Inner::Kms(k) => {
                if envelope.kdf.is_some() || envelope.key_nonce.is_some() {
                    return Err(sealed_error(damaged(
                        "a KMS-sealed file has no `kdf` or `key_nonce`",
                    )));
                }
                let wrapped =
                    b64_field(&envelope.wrapped_key, "wrapped_key").map_err(&sealed_error)?;
                k.decrypt_data_key(&wrapped).map_err(sealed_error)?
            }
        };
        let nonce = b64_field(&envelope.nonce, "nonce").map_err(&sealed_error)?;
        let ciphertext = b64_field(&envelope.ciphertext, "ciphertext").map_err(&sealed_error)?;
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| sealed_error(damaged("`nonce` is not 12 bytes")))?;
        decrypt(&data_key, &nonce, &ciphertext, &envelope.body_aad()).map_err(|()| {
            sealed_error(
                "the file was changed: its encrypted contents or header fail the integrity \
                 check (the key itself is right)"
                    .to_string(),
            )
        })
    }

    /// Why a file sealed with `found` cannot be opened by this sealer.
    fn provider_mismatch(&self, found: &str) -> String {
        let configured = match &*self.inner {
            Inner::Passphrase(p) => format!("a passphrase (from `{}`)", p.env),
            #[cfg(feature = "kms")]
            Inner::Kms(k) => format!("AWS KMS key `{}`", k.key_id()),
        };
        match found {
            PASSPHRASE | AWS_KMS => format!(
                "the configured key is {configured}, not {}: set `{CONFIG}` to the key the \
                 state was sealed with",
                if found == PASSPHRASE {
                    "a passphrase"
                } else {
                    "an AWS KMS key"
                }
            ),
            other => format!(
                "key provider `{other}` is unknown to this build of flyteinfra (the file may \
                 have been sealed by a newer one: upgrade flyteinfra)"
            ),
        }
    }

    /// How many times this sealer (and its clones) ran argon2id.
    #[cfg(test)]
    fn derivations(&self) -> u64 {
        match &*self.inner {
            Inner::Passphrase(p) => p.derivations.load(Ordering::Relaxed),
            #[cfg(feature = "kms")]
            Inner::Kms(_) => 0,
        }
    }
}

/// Whether `bytes` is a sealed envelope (rather than a plain document): a JSON object
/// with a `flyteinfra_sealed` field. Cheap for a sealed file as written (the field comes
/// first), and true also for a sealed file cut short.
pub fn is_sealed(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.trim_ascii_start().strip_prefix(b"{") else {
        return false;
    };
    if rest.trim_ascii_start().starts_with(MARKER) {
        return true;
    }
    // Keys moved around by hand: the field at the top level only.
    #[derive(Deserialize)]
    struct Probe {
        flyteinfra_sealed: Option<serde::de::IgnoredAny>,
    }
    bytes.windows(MARKER.len()).any(|w| w == MARKER)
        && serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.flyteinfra_sealed.is_some())
}

const MARKER: &[u8] = b"\"flyteinfra_sealed\"";

/// The key provider and key id a sealed envelope records (`("aws_kms",
/// "alias/flyteinfra-state")`), for messages; `None` when `bytes` is not sealed or the
/// header cannot be read.
pub fn sealed_header(bytes: &[u8]) -> Option<(String, String)> {
    if !is_sealed(bytes) {
        return None;
    }
    #[derive(Deserialize)]
    struct Header {
        key_provider: String,
        key_id: String,
    }
    if let Ok(h) = serde_json::from_slice::<Header>(bytes) {
        return Some((h.key_provider, h.key_id));
    }
    // Cut short or damaged: the header lines come first, one field a line, as written.
    let text = String::from_utf8_lossy(bytes);
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let value = line.trim().strip_prefix(&format!("\"{name}\":"))?;
            serde_json::from_str::<String>(value.trim().trim_end_matches(',')).ok()
        })
    };
    Some((field("key_provider")?, field("key_id")?))
}

/// The error for a sealed document found where no key is configured.
pub fn unsealed_error(path: &Path, bytes: &[u8]) -> StateError {
    let (provider, key_id) =
        sealed_header(bytes).unwrap_or_else(|| ("an unknown".to_string(), "?".to_string()));
    StateError::Sealed {
        path: path.to_path_buf(),
        provider,
        key_id,
        reason: format!("no key is configured: set `{CONFIG}` in the config"),
    }
}

/// The envelope as stored. Field order is the file's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    flyteinfra_sealed: u32,
    key_provider: String,
    key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<Kdf>,
    wrapped_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_nonce: Option<String>,
    nonce: String,
    ciphertext: String,
}

/// How a passphrase became the key that wraps the data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    alg: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

/// The header fields bound into the associated data, in a fixed order.
#[derive(Serialize)]
struct Bound<'a> {
    flyteinfra_sealed: u32,
    key_provider: &'a str,
    key_id: &'a str,
    kdf: Option<&'a Kdf>,
    wrapped_key: Option<&'a str>,
    key_nonce: Option<&'a str>,
}

impl Envelope {
    /// An envelope with its header filled in (nonce and ciphertext empty).
    fn header(
        provider: &str,
        key_id: &str,
        kdf: Option<Kdf>,
        wrapped_key: &[u8],
        key_nonce: Option<&[u8]>,
    ) -> Envelope {
        Envelope {
            flyteinfra_sealed: SEALED_FORMAT,
            key_provider: provider.to_string(),
            key_id: key_id.to_string(),
            kdf,
            wrapped_key: B64.encode(wrapped_key),
            key_nonce: key_nonce.map(|n| B64.encode(n)),
            nonce: String::new(),
            ciphertext: String::new(),
        }
    }

    fn parse(stored: &[u8]) -> Result<Envelope, String> {
        if !is_sealed(stored) {
            return Err(
                "the stored document is not a sealed flyteinfra document (it is not \
                        encrypted)"
                    .to_string(),
            );
        }
        // The format first: a newer one may have other fields.
        #[derive(Deserialize)]
        struct Format {
            flyteinfra_sealed: serde_json::Value,
        }
        let format = serde_json::from_slice::<Format>(stored)
            .map_err(|e| damaged(&format!("it is not valid JSON: {e}")))?;
        match format.flyteinfra_sealed.as_u64() {
            Some(v) if v == u64::from(SEALED_FORMAT) => {}
            Some(v) if v > u64::from(SEALED_FORMAT) => {
                return Err(format!(
                    "it was sealed by a newer flyteinfra (sealed format {v}; this build reads \
                     format {SEALED_FORMAT}): upgrade flyteinfra"
                ));
            }
            _ => return Err(damaged("`flyteinfra_sealed` is not a known format")),
        }
        serde_json::from_slice::<Envelope>(stored).map_err(|e| damaged(&e.to_string()))
    }

    /// The associated data of the data key's wrapping (passphrase): the header before the
    /// wrapped key.
    fn key_aad(&self) -> Vec<u8> {
        self.aad(b"flyteinfra-sealed key\n", false)
    }

    /// The associated data of the contents: the whole header.
    fn body_aad(&self) -> Vec<u8> {
        self.aad(b"flyteinfra-sealed body\n", true)
    }

    fn aad(&self, domain: &[u8], with_key: bool) -> Vec<u8> {
        let bound = Bound {
            flyteinfra_sealed: self.flyteinfra_sealed,
            key_provider: &self.key_provider,
            key_id: &self.key_id,
            kdf: self.kdf.as_ref(),
            wrapped_key: with_key.then_some(self.wrapped_key.as_str()),
            key_nonce: if with_key {
                self.key_nonce.as_deref()
            } else {
                None
            },
        };
        let mut aad = domain.to_vec();
        serde_json::to_writer(&mut aad, &bound).expect("a header serializes");
        aad
    }
}

/// The key of a passphrase: the passphrase, this sealer's salt, and the derived keys.
struct PassphraseKey {
    env: String,
    passphrase: Zeroizing<Vec<u8>>,
    salt: [u8; SALT_LEN],
    /// Derived keys by parameters and salt, newest last.
    keks: Mutex<Vec<(Kdf, Zeroizing<[u8; KEY_LEN]>)>>,
    derivations: AtomicU64,
}

impl PassphraseKey {
    fn new(env: String, passphrase: Sensitive<String>) -> Result<PassphraseKey, StateError> {
        if env.is_empty() {
            return Err(setup(
                "no environment variable is named for the passphrase".to_string(),
            ));
        }
        if passphrase.expose().is_empty() {
            return Err(setup(format!(
                "the passphrase variable `{env}` is not set or is empty: set it to the \
                 state's passphrase"
            )));
        }
        let salt = random::<SALT_LEN>().map_err(setup)?;
        Ok(PassphraseKey {
            env,
            passphrase: Zeroizing::new(passphrase.expose().as_bytes().to_vec()),
            salt,
            keks: Mutex::new(Vec::new()),
            derivations: AtomicU64::new(0),
        })
    }

    /// A new data key, wrapped with the key derived from this sealer's salt.
    fn new_data_key(&self) -> Result<(Envelope, Zeroizing<[u8; KEY_LEN]>), String> {
        let kdf = Kdf {
            alg: "argon2id".to_string(),
            m_kib: ARGON2_M_KIB,
            t: ARGON2_T,
            p: ARGON2_P,
            salt: B64.encode(self.salt),
        };
        let kek = self.kek(&kdf, &self.salt)?;
        let data_key = Zeroizing::new(random::<KEY_LEN>()?);
        let key_nonce = random::<NONCE_LEN>()?;
        let mut envelope = Envelope::header(PASSPHRASE, &self.env, Some(kdf), &[], None);
        let wrapped = encrypt(&kek, &key_nonce, &*data_key, &envelope.key_aad())
            .map_err(|()| "AES-GCM refused to wrap the data key".to_string())?;
        envelope.wrapped_key = B64.encode(wrapped);
        envelope.key_nonce = Some(B64.encode(key_nonce));
        Ok((envelope, data_key))
    }

    /// The data key of `envelope`, unwrapped with the key derived from its salt.
    fn open_data_key(&self, envelope: &Envelope) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
        let Some(kdf) = &envelope.kdf else {
            return Err(damaged("a passphrase-sealed file needs `kdf`"));
        };
        let Some(key_nonce) = &envelope.key_nonce else {
            return Err(damaged("a passphrase-sealed file needs `key_nonce`"));
        };
        if kdf.alg != "argon2id" {
            return Err(format!(
                "key derivation `{}` is unknown to this build of flyteinfra (the file may have \
                 been sealed by a newer one: upgrade flyteinfra)",
                kdf.alg
            ));
        }
        if !(1..=MAX_M_KIB).contains(&kdf.m_kib)
            || !(1..=MAX_T).contains(&kdf.t)
            || !(1..=MAX_P).contains(&kdf.p)
        {
            return Err(damaged(&format!(
                "the argon2id parameters (m_kib {}, t {}, p {}) are out of range",
                kdf.m_kib, kdf.t, kdf.p
            )));
        }
        let salt = b64_field(&kdf.salt, "kdf.salt")?;
        if !(8..=64).contains(&salt.len()) {
            return Err(damaged("`kdf.salt` is not 8 to 64 bytes"));
        }
        let key_nonce: [u8; NONCE_LEN] = b64_field(key_nonce, "key_nonce")?
            .try_into()
            .map_err(|_| damaged("`key_nonce` is not 12 bytes"))?;
        let wrapped = b64_field(&envelope.wrapped_key, "wrapped_key")?;
        let kek = self.kek(kdf, &salt)?;
        let data_key = decrypt(&kek, &key_nonce, &wrapped, &envelope.key_aad())
            .map_err(|()| self.wrong_passphrase(&envelope.key_id))?;
        let data_key = Zeroizing::new(data_key);
        let key: [u8; KEY_LEN] = data_key
            .as_slice()
            .try_into()
            .map_err(|_| damaged("the data key is not 32 bytes"))?;
        Ok(Zeroizing::new(key))
    }

    fn wrong_passphrase(&self, sealed_env: &str) -> String {
        if sealed_env == self.env {
            format!(
                "wrong passphrase (from `{}`), or the file was changed",
                self.env
            )
        } else {
            format!(
                "wrong passphrase (from `{}`; the file was sealed with the passphrase from \
                 `{sealed_env}`), or the file was changed",
                self.env
            )
        }
    }

    /// The key derived with `kdf` and `salt` (its decoded `salt`), derived at most once.
    fn kek(&self, kdf: &Kdf, salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
        // Held while deriving: concurrent seals wait for one derivation.
        let mut keks = self.keks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, key)) = keks.iter().find(|(k, _)| k == kdf) {
            return Ok(key.clone());
        }
        let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(KEY_LEN))
            .map_err(|e| damaged(&format!("the argon2id parameters are invalid: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        self.derivations.fetch_add(1, Ordering::Relaxed);
        argon
            .hash_password_into(&self.passphrase, salt, &mut *key)
            .map_err(|e| format!("argon2id failed: {e}"))?;
        if keks.len() >= KEK_CACHE {
            keks.remove(0);
        }
        keks.push((kdf.clone(), key.clone()));
        Ok(key)
    }
}

fn encrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    msg: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, ()> {
    Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map_err(|_| ())
}

fn decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    msg: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, ()> {
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map_err(|_| ())
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("the OS random generator failed: {e}"))?;
    Ok(b)
}

fn b64_field(value: &str, field: &str) -> Result<Vec<u8>, String> {
    B64.decode(value)
        .map_err(|_| damaged(&format!("`{field}` is not base64")))
}

/// The reason for a header that does not decode.
fn damaged(detail: &str) -> String {
    format!("its encryption header is damaged ({detail}): the file was changed")
}

fn setup(message: String) -> StateError {
    StateError::Setup {
        path: PathBuf::from(CONFIG),
        message,
    }
}

#[cfg(feature = "kms")]
mod kms {
    //! Data keys from AWS KMS, on the key's own runtime thread (see the S3 backend: the
    //! callers are sometimes inside a tokio runtime, where blocking on one panics).

    use std::future::Future;
    use std::sync::Mutex;
    use std::time::Duration;

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::DataKeySpec;
    use zeroize::{Zeroize, Zeroizing};

    use super::{CONFIG, KEY_LEN, setup};
    use crate::error::StateError;
    use crate::worker::aws::{retry_config, timeout_config};
    use crate::worker::{Worker, chain};

    const CALL_LIMIT: Duration = Duration::from_secs(90);
    /// The encryption context of every data key: a data key flyteinfra made decrypts
    /// only with it.
    const CONTEXT: (&str, &str) = ("purpose", "flyteinfra-sealed");

    /// A KMS key and the client that reaches it.
    pub(super) struct KmsKey {
        key_id: String,
        region: String,
        client: aws_sdk_kms::Client,
        worker: Worker,
        /// The ARN of the configured key, once known (the answer of `GenerateDataKey` or
        /// `DescribeKey`): a file's data key must have been made by that key.
        arn: Mutex<Option<String>>,
    }

    impl KmsKey {
        pub(super) fn new(key_id: String, region: String) -> Result<KmsKey, StateError> {
            let chosen = (!region.is_empty()).then(|| Region::new(region.clone()));
            Self::start(key_id, region, async move {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(retry_config())
                    .timeout_config(timeout_config());
                if let Some(region) = chosen {
                    loader = loader.region(region);
                }
                loader.load().await
            })
        }

        pub(super) fn with_sdk_config(
            key_id: String,
            config: &SdkConfig,
        ) -> Result<KmsKey, StateError> {
            let region = config.region().map(|r| r.to_string()).unwrap_or_default();
            let config = config.clone();
            Self::start(key_id, region, async move { config })
        }

        fn start(
            key_id: String,
            region: String,
            config: impl Future<Output = SdkConfig> + Send + 'static,
        ) -> Result<KmsKey, StateError> {
            if key_id.is_empty() {
                return Err(setup("no AWS KMS key id is configured".to_string()));
            }
            let (worker, _) = Worker::start("kms", "AWS KMS", CALL_LIMIT).map_err(|e| {
                setup(format!(
                    "AWS KMS key `{key_id}`: cannot start the thread of the KMS client: {e}"
                ))
            })?;
            let client = worker
                .run(async move {
                    let config = config.await;
                    let conf = aws_sdk_kms::config::Builder::from(&config)
                        .retry_config(retry_config())
                        .timeout_config(timeout_config())
                        .build();
                    aws_sdk_kms::Client::from_conf(conf)
                })
                .map_err(|e| setup(format!("AWS KMS key `{key_id}`: {e}")))?;
            let region = if region.is_empty() {
                client
                    .config()
                    .region()
                    .map(|r| r.to_string())
                    .unwrap_or_default()
            } else {
                region
            };
            Ok(KmsKey {
                key_id,
                region,
                client,
                worker,
                arn: Mutex::new(None),
            })
        }

        pub(super) fn key_id(&self) -> &str {
            &self.key_id
        }

        /// `AWS KMS key `alias/x` in region `us-east-1``, for messages.
        fn describe(&self) -> String {
            if self.region.is_empty() {
                format!("AWS KMS key `{}`", self.key_id)
            } else {
                format!("AWS KMS key `{}` in region `{}`", self.key_id, self.region)
            }
        }

        /// A new AES-256 data key: (the wrapped key to store, the key).
        pub(super) fn generate_data_key(
            &self,
        ) -> Result<(Vec<u8>, Zeroizing<[u8; KEY_LEN]>), String> {
            let req = self
                .client
                .generate_data_key()
                .key_id(&self.key_id)
                .key_spec(DataKeySpec::Aes256)
                .encryption_context(CONTEXT.0, CONTEXT.1);
            let out = self
                .worker
                .run(async move {
                    req.send()
                        .await
                        .map_err(|e| Failure::of("GenerateDataKey", &e))
                })
                .map_err(|e| format!("{}: {e}", self.describe()))?
                .map_err(|f| format!("{}: {}", self.describe(), f.explain()))?;
            let (Some(wrapped), Some(plain)) = (out.ciphertext_blob(), out.plaintext()) else {
                return Err(format!(
                    "{}: GenerateDataKey: the answer has no key",
                    self.describe()
                ));
            };
            let key = key_of(plain.as_ref())
                .map_err(|e| format!("{}: GenerateDataKey: {e}", self.describe()))?;
            if let Some(arn) = out.key_id() {
                *self.arn.lock().unwrap_or_else(|e| e.into_inner()) = Some(arn.to_string());
            }
            Ok((wrapped.as_ref().to_vec(), key))
        }

        /// The data key `wrapped` holds, which the configured key must have made.
        pub(super) fn decrypt_data_key(
            &self,
            wrapped: &[u8],
        ) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
            let expected = self.arn()?;
            let req = self
                .client
                .decrypt()
                .key_id(&self.key_id)
                .ciphertext_blob(Blob::new(wrapped))
                .encryption_context(CONTEXT.0, CONTEXT.1);
            let out = self
                .worker
                .run(async move { req.send().await.map_err(|e| Failure::of("Decrypt", &e)) })
                .map_err(|e| format!("{}: {e}", self.describe()))?
                .map_err(|f| self.decrypt_failure(&f))?;
            let Some(mut plain) = out.plaintext().map(|b| b.as_ref().to_vec()) else {
                return Err(format!(
                    "{}: Decrypt: the answer has no key",
                    self.describe()
                ));
            };
            let key = key_of(&plain);
            plain.zeroize();
            let key = key.map_err(|e| format!("{}: Decrypt: {e}", self.describe()))?;
            // KMS checks the key id itself; an emulator may not, so check its answer too.
            if let (Some(expected), Some(used)) = (expected, out.key_id())
                && expected != used
            {
                return Err(format!(
                    "it was sealed with AWS KMS key `{used}`, not the configured {} \
                     (`{expected}`): set `{CONFIG}` to the key it was sealed with",
                    self.describe()
                ));
            }
            Ok(key)
        }

        /// The configured key's ARN; `None` when KMS does not say (no permission to
        /// describe the key: KMS itself still refuses a file of another key).
        fn arn(&self) -> Result<Option<String>, String> {
            let mut arn = self.arn.lock().unwrap_or_else(|e| e.into_inner());
            if arn.is_some() {
                return Ok(arn.clone());
            }
            let req = self.client.describe_key().key_id(&self.key_id);
            let got = self
                .worker
                .run(async move { req.send().await.map_err(|e| Failure::of("DescribeKey", &e)) })
                .map_err(|e| format!("{}: {e}", self.describe()))?;
            match got {
                Ok(out) => {
                    *arn = out.key_metadata().and_then(|m| m.arn()).map(str::to_string);
                    Ok(arn.clone())
                }
                Err(f) if f.code.as_deref() == Some("NotFoundException") => Err(format!(
                    "the configured {} does not exist: {}; set `{CONFIG}` to the key the state \
                     was sealed with",
                    self.describe(),
                    f.text
                )),
                Err(_) => Ok(None),
            }
        }

        fn decrypt_failure(&self, f: &Failure) -> String {
            let what = self.describe();
            match f.code.as_deref() {
                Some("IncorrectKeyException") => format!(
                    "it was sealed with another AWS KMS key than the configured {what}: set \
                     `{CONFIG}` to the key it was sealed with ({})",
                    f.text
                ),
                Some("InvalidCiphertextException") => format!(
                    "AWS KMS cannot unwrap its data key with the configured {what}: it was \
                     sealed with another key, or the file was changed ({})",
                    f.text
                ),
                _ => format!("{what}: {}", f.explain()),
            }
        }
    }

    fn key_of(plain: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
        let key: [u8; KEY_LEN] = plain
            .try_into()
            .map_err(|_| format!("the data key is {} bytes, not {KEY_LEN}", plain.len()))?;
        Ok(Zeroizing::new(key))
    }

    /// A failed request, reduced to what decides its message.
    struct Failure {
        code: Option<String>,
        text: String,
    }

    impl Failure {
        fn of<E>(op: &str, e: &SdkError<E, HttpResponse>) -> Failure
        where
            E: ProvideErrorMetadata + std::error::Error + 'static,
        {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let text = match (e.code(), status) {
                (Some(code), Some(status)) => format!(
                    "{op}: {code}: {} (HTTP {status})",
                    e.message().unwrap_or("no message")
                ),
                _ => format!("{op}: {}", chain(e)),
            };
            Failure {
                code: e.code().map(str::to_string),
                text,
            }
        }

        /// KMS's words and what to do about them.
        fn explain(&self) -> String {
            let hint = match self.code.as_deref() {
                Some("NotFoundException") => format!(
                    "; the key does not exist in this region (or these credentials cannot see \
                     it); check `{CONFIG}`"
                ),
                Some("AccessDeniedException") => "; check the AWS credentials (AWS_PROFILE, \
                     `aws sso login`, AWS_ACCESS_KEY_ID) and that the key policy allows \
                     kms:GenerateDataKey, kms:Decrypt and kms:DescribeKey"
                    .to_string(),
                Some("DisabledException") | Some("KMSInvalidStateException") => {
                    "; the key is disabled or pending deletion: enable it (or cancel its \
                     deletion) in AWS KMS"
                        .to_string()
                }
                None => "; check the AWS credentials and the network".to_string(),
                _ => String::new(),
            };
            format!("{}{hint}", self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "FLYTEINFRA_TEST_STATE_PASSPHRASE";
    const PW: &str = "correct horse battery staple";
    const OTHER_PW: &str = "incorrect mule battery staple";
    const DOC: &[u8] = b"{\n  \"format_version\": 2,\n  \"password\": \"hunter2\"\n}\n";

    fn source(pw: &str) -> KeySource {
        KeySource::Passphrase {
            env: ENV.to_string(),
            passphrase: Sensitive::new(pw.to_string()),
        }
    }

    fn sealer(pw: &str) -> Sealer {
        Sealer::new(source(pw)).unwrap()
    }

    fn path() -> &'static Path {
        Path::new("/tmp/x/aws.state.json")
    }

    fn passphrase_key(s: &Sealer) -> &PassphraseKey {
        match &*s.inner {
            Inner::Passphrase(p) => p,
            #[cfg(feature = "kms")]
            Inner::Kms(_) => unreachable!(),
        }
    }

    fn envelope(bytes: &[u8]) -> Envelope {
        serde_json::from_slice(bytes).unwrap()
    }

    fn to_bytes(e: &Envelope) -> Vec<u8> {
        serde_json::to_vec_pretty(e).unwrap()
    }

    /// The Sealed error of opening `bytes`, checked to name the file, provider and key id
    /// and never a passphrase; its reason.
    #[track_caller]
    fn sealed_reason(s: &Sealer, bytes: &[u8], provider: &str, key_id: &str) -> String {
        let e = s.open(bytes, path()).unwrap_err();
        let msg = e.to_string();
        let StateError::Sealed {
            path: p,
            provider: pr,
            key_id: k,
            reason,
        } = e
        else {
            panic!("expected Sealed, got {e:?}")
        };
        assert_eq!(p, path());
        assert_eq!((pr.as_str(), k.as_str()), (provider, key_id), "{msg}");
        assert!(
            msg.starts_with(&format!(
                "`/tmp/x/aws.state.json` is encrypted with {provider} key `{key_id}`: "
            )),
            "{msg}"
        );
        for secret in [PW, OTHER_PW] {
            assert!(!msg.contains(secret), "{msg}");
        }
        reason
    }

    #[test]
    fn round_trip() {
        let s = sealer(PW);
        let sealed = s.seal(DOC, path()).unwrap();
        assert!(sealed.ends_with(b"}\n"));
        assert!(sealed.starts_with(b"{\n  \"flyteinfra_sealed\": 1,\n"));
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(DOC));
        assert_eq!(
            sealed_header(&sealed),
            Some(("passphrase".to_string(), ENV.to_string()))
        );
        assert_eq!(sealed_header(DOC), None);
        assert_eq!(s.open(&sealed, path()).unwrap(), DOC);
        // Another sealer (another salt) with the same passphrase opens it.
        assert_eq!(sealer(PW).open(&sealed, path()).unwrap(), DOC);
        // Empty and large documents.
        assert_eq!(s.open(&s.seal(b"", path()).unwrap(), path()).unwrap(), b"");
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(s.open(&s.seal(&big, path()).unwrap(), path()).unwrap(), big);
    }

    #[test]
    fn each_seal_has_its_own_data_key_and_nonce() {
        let s = sealer(PW);
        let a = s.seal(DOC, path()).unwrap();
        let b = s.seal(DOC, path()).unwrap();
        assert_ne!(a, b);
        let (ea, eb) = (envelope(&a), envelope(&b));
        assert_ne!(ea.wrapped_key, eb.wrapped_key);
        assert_ne!(ea.key_nonce, eb.key_nonce);
        assert_ne!(ea.nonce, eb.nonce);
        assert_ne!(ea.ciphertext, eb.ciphertext);
        // One salt per sealer.
        assert_eq!(ea.kdf, eb.kdf);
        let p = passphrase_key(&s);
        assert_ne!(
            *p.open_data_key(&ea).unwrap(),
            *p.open_data_key(&eb).unwrap()
        );
        // Sealers differ in salt.
        let c = envelope(&sealer(PW).seal(DOC, path()).unwrap());
        assert_ne!(ea.kdf.unwrap().salt, c.kdf.unwrap().salt);
    }

    #[test]
    fn a_wrong_passphrase_is_one_clear_error() {
        let sealed = sealer(PW).seal(DOC, path()).unwrap();
        let reason = sealed_reason(&sealer(OTHER_PW), &sealed, "passphrase", ENV);
        assert_eq!(
            reason,
            format!("wrong passphrase (from `{ENV}`), or the file was changed")
        );
        // Read from another variable: both are named.
        let other = Sealer::new(KeySource::Passphrase {
            env: "OTHER_VAR".into(),
            passphrase: Sensitive::new(OTHER_PW.into()),
        })
        .unwrap();
        let reason = sealed_reason(&other, &sealed, "passphrase", ENV);
        assert!(
            reason.contains("wrong passphrase (from `OTHER_VAR`"),
            "{reason}"
        );
        assert!(
            reason.contains(&format!("passphrase from `{ENV}`")),
            "{reason}"
        );
        // The right passphrase from another variable opens it.
        let renamed = Sealer::new(KeySource::Passphrase {
            env: "OTHER_VAR".into(),
            passphrase: Sensitive::new(PW.into()),
        })
        .unwrap();
        assert_eq!(renamed.open(&sealed, path()).unwrap(), DOC);
    }

    #[test]
    fn a_changed_ciphertext_fails() {
        let s = sealer(PW);
        let sealed = s.seal(DOC, path()).unwrap();
        let mut e = envelope(&sealed);
        let mut ct = B64.decode(&e.ciphertext).unwrap();
        ct[3] ^= 1;
        e.ciphertext = B64.encode(&ct);
        let reason = sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);
        assert!(reason.starts_with("the file was changed: "), "{reason}");
        // Cut short, or a changed nonce.
        let mut e = envelope(&sealed);
        ct.truncate(ct.len() - 1);
        e.ciphertext = B64.encode(&ct);
        sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);
        let mut e = envelope(&sealed);
        let mut nonce = B64.decode(&e.nonce).unwrap();
        nonce[0] ^= 0x80;
        e.nonce = B64.encode(&nonce);
        let reason = sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);
        assert!(reason.starts_with("the file was changed: "), "{reason}");
        // Not base64.
        let mut e = envelope(&sealed);
        e.ciphertext.insert(0, '!');
        let reason = sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);
        assert!(reason.contains("`ciphertext` is not base64"), "{reason}");
        // The file cut in half.
        let reason = sealed_reason(&s, &sealed[..sealed.len() / 2], "passphrase", ENV);
        assert!(reason.contains("damaged"), "{reason}");
    }

    #[test]
    fn a_changed_header_fails() {
        let s = sealer(PW);
        let sealed = s.seal(DOC, path()).unwrap();
        let other = envelope(&s.seal(b"another document", path()).unwrap());

        let mut e = envelope(&sealed);
        e.key_id = "SOME_OTHER_VAR".into();
        let reason = sealed_reason(&s, &to_bytes(&e), "passphrase", "SOME_OTHER_VAR");
        assert!(reason.contains("wrong passphrase"), "{reason}");

        let mut e = envelope(&sealed);
        e.kdf.as_mut().unwrap().t = 3;
        sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);

        // Another file's data key (it unwraps fine: the contents do not).
        let mut e = envelope(&sealed);
        e.wrapped_key = other.wrapped_key.clone();
        e.key_nonce = other.key_nonce.clone();
        let reason = sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);
        assert!(reason.starts_with("the file was changed: "), "{reason}");

        let mut e = envelope(&sealed);
        e.key_provider = "aws_kms".into();
        let reason = sealed_reason(&s, &to_bytes(&e), "aws_kms", ENV);
        assert!(
            reason.starts_with(&format!(
                "the configured key is a passphrase (from `{ENV}`), not an AWS KMS key"
            )),
            "{reason}"
        );
        let mut e = envelope(&sealed);
        e.key_provider = "vault".into();
        let reason = sealed_reason(&s, &to_bytes(&e), "vault", ENV);
        assert!(reason.contains("upgrade flyteinfra"), "{reason}");

        // Huge argon2 parameters are refused before any work.
        let mut e = envelope(&sealed);
        e.kdf.as_mut().unwrap().m_kib = u32::MAX;
        let reason = sealed_reason(&s, &to_bytes(&e), "passphrase", ENV);
        assert!(reason.contains("out of range"), "{reason}");

        // A field added by hand.
        let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        v["comment"] = "hi".into();
        let reason = sealed_reason(&s, v.to_string().as_bytes(), "passphrase", ENV);
        assert!(reason.contains("unknown field `comment`"), "{reason}");

        // A newer format.
        let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        v["flyteinfra_sealed"] = 2.into();
        v["novel"] = 1.into();
        let reason = sealed_reason(&s, v.to_string().as_bytes(), "passphrase", ENV);
        assert!(
            reason.starts_with("it was sealed by a newer flyteinfra (sealed format 2"),
            "{reason}"
        );
        assert_eq!(s.open(&sealed, path()).unwrap(), DOC);
    }

    #[test]
    fn the_header_holds_no_secret() {
        let s = sealer(PW);
        let sealed = s.seal(DOC, path()).unwrap();
        let p = passphrase_key(&s);
        let data_key = p.open_data_key(&envelope(&sealed)).unwrap();
        let kek = p.keks.lock().unwrap()[0].1.clone();
        let text = String::from_utf8(sealed.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "flyteinfra_sealed",
                "key_provider",
                "key_id",
                "kdf",
                "wrapped_key",
                "key_nonce",
                "nonce",
                "ciphertext"
            ]
        );
        // Every leaf, as text and (where it is base64) as bytes.
        let mut leaves = Vec::new();
        fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
            match v {
                serde_json::Value::Object(m) => m.values().for_each(|v| walk(v, out)),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                leaf => out.push(leaf),
            }
        }
        walk(&v, &mut leaves);
        assert_eq!(leaves.len(), 12);
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        for leaf in leaves {
            let s = leaf.to_string();
            for secret in [PW.as_bytes(), b"hunter2", &data_key[..], &kek[..]] {
                assert!(!contains(s.as_bytes(), secret), "{s}");
                if let Some(bytes) = leaf.as_str().and_then(|t| B64.decode(t).ok()) {
                    assert!(!contains(&bytes, secret), "{s}");
                }
            }
        }
        for secret in [
            PW.to_string(),
            B64.encode(PW),
            B64.encode(&data_key[..]),
            B64.encode(&kek[..]),
        ] {
            assert!(!text.contains(&secret));
        }
        assert_eq!(v["key_provider"], "passphrase");
        assert_eq!(v["key_id"], ENV);
        assert_eq!(
            v["kdf"],
            serde_json::json!({"alg": "argon2id", "m_kib": 19456, "t": 2, "p": 1, "salt": v["kdf"]["salt"]})
        );
    }

    #[test]
    fn debug_never_shows_the_passphrase() {
        let src = source(PW);
        let s = Sealer::new(src.clone()).unwrap();
        s.seal(DOC, path()).unwrap();
        for shown in [
            format!("{src:?}"),
            format!("{src:#?}"),
            format!("{s:?}"),
            format!("{s:#?}"),
        ] {
            assert!(!shown.contains(PW), "{shown}");
            assert!(shown.contains(ENV), "{shown}");
        }
        assert_eq!(
            format!("{s:?}"),
            format!("Sealer {{ key_provider: \"passphrase\", key_id: \"{ENV}\", .. }}")
        );
        assert_eq!((src.provider(), src.key_id()), ("passphrase", ENV));
    }

    #[test]
    fn argon2_runs_once_per_salt() {
        let s = sealer(PW);
        assert_eq!(s.derivations(), 0);
        let sealed: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                s.clone()
                    .seal(format!("doc {i}").as_bytes(), path())
                    .unwrap()
            })
            .collect();
        assert_eq!(s.derivations(), 1);
        for (i, bytes) in sealed.iter().enumerate() {
            assert_eq!(
                s.open(bytes, path()).unwrap(),
                format!("doc {i}").as_bytes()
            );
        }
        assert_eq!(s.derivations(), 1);
        // Another sealer derives once for the files' salt, once for its own.
        let reader = sealer(PW);
        for bytes in &sealed {
            reader.open(bytes, path()).unwrap();
        }
        assert_eq!(reader.derivations(), 1);
        reader.seal(DOC, path()).unwrap();
        reader.seal(DOC, path()).unwrap();
        assert_eq!(reader.derivations(), 2);
    }

    #[test]
    fn a_missing_passphrase_is_refused_when_configured() {
        let e = Sealer::new(KeySource::passphrase_from_env(
            "FLYTEINFRA_TEST_SURELY_UNSET_VARIABLE",
        ))
        .unwrap_err();
        assert!(matches!(e, StateError::Setup { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "state backend `state.encryption`: the passphrase variable \
             `FLYTEINFRA_TEST_SURELY_UNSET_VARIABLE` is not set or is empty: set it to the \
             state's passphrase"
        );
        let e = Sealer::new(source("")).unwrap_err();
        assert!(e.to_string().contains(ENV), "{e}");
        // `PATH` is set in every test environment.
        let KeySource::Passphrase { passphrase, .. } = KeySource::passphrase_from_env("PATH")
        else {
            unreachable!()
        };
        assert_eq!(passphrase.expose(), &std::env::var("PATH").unwrap());
    }

    #[test]
    fn a_sealed_file_without_a_key_is_one_clear_error() {
        let sealed = sealer(PW).seal(DOC, path()).unwrap();
        let e = unsealed_error(path(), &sealed);
        assert_eq!(
            e.to_string(),
            format!(
                "`/tmp/x/aws.state.json` is encrypted with passphrase key `{ENV}`: no key \
                 is configured: set `state.encryption` in the config"
            )
        );
        // Cut short, the header is still read.
        let cut = &sealed[..sealed.len() - 40];
        assert!(is_sealed(cut));
        assert_eq!(
            sealed_header(cut),
            Some(("passphrase".to_string(), ENV.to_string()))
        );
        // A plain document given to `open`.
        let reason = sealed_reason(&sealer(PW), DOC, "passphrase", ENV);
        assert!(reason.contains("not encrypted"), "{reason}");
    }

    #[test]
    fn sealed_documents_are_recognised() {
        let sealed = sealer(PW).seal(DOC, path()).unwrap();
        // Keys moved around by hand.
        let v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        let mut moved = serde_json::Map::new();
        moved.insert("nonce".into(), v["nonce"].clone());
        for (k, val) in v.as_object().unwrap() {
            moved.insert(k.clone(), val.clone());
        }
        let moved = serde_json::to_vec(&moved).unwrap();
        assert!(!moved.starts_with(b"{\"flyteinfra_sealed\""));
        assert!(is_sealed(&moved));
        assert_eq!(sealer(PW).open(&moved, path()).unwrap(), DOC);
        // Compact, and with leading white space.
        assert!(is_sealed(v.to_string().as_bytes()));
        assert!(is_sealed(format!(" \n{v}").as_bytes()));
        // A plain document that merely mentions the field.
        for plain in [
            &br#"{"format_version": 2, "a": {"flyteinfra_sealed": 1}}"#[..],
            br#"{"format_version": 2, "a": "\"flyteinfra_sealed\""}"#,
            br#"["flyteinfra_sealed"]"#,
            b"",
            b"\xff\xfe",
        ] {
            assert!(!is_sealed(plain), "{}", String::from_utf8_lossy(plain));
        }
    }
}
