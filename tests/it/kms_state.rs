//! State sealed with an AWS KMS key, against moto's KMS: the round trip (through the key's
//! alias, id or ARN), a missing key, a file sealed with another key, a changed file, and
//! use from inside a tokio runtime (as the CLI does).

use std::path::Path;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};
use flyteinfra_state::{KeySource, Sealer, StateError, is_sealed, sealed_header};

use crate::aws::{rt, unique_name};

const REGION: &str = "us-east-1";
const DOC: &[u8] = b"{\n  \"format_version\": 2,\n  \"password\": \"hunter2\"\n}\n";

/// moto through the proxy, with static credentials: nothing read from the environment.
fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(crate::moto::url())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "static",
        )))
        .build()
}

/// A new symmetric KMS key with an alias: (alias name, key id, key ARN).
pub(crate) fn new_key() -> (String, String, String) {
    let kms = aws_sdk_kms::Client::new(&sdk_config());
    let alias = format!("alias/flyteinfra-{}", unique_name());
    rt().block_on(async {
        let out = kms
            .create_key()
            .description("flyteinfra sealed state (test)")
            .send()
            .await
            .unwrap();
        let meta = out.key_metadata().unwrap();
        kms.create_alias()
            .alias_name(&alias)
            .target_key_id(meta.key_id())
            .send()
            .await
            .unwrap();
        (
            alias,
            meta.key_id().to_string(),
            meta.arn().unwrap().to_string(),
        )
    })
}

fn sealer(key_id: &str) -> Sealer {
    Sealer::kms_with_sdk_config(key_id, &sdk_config()).unwrap()
}

fn path() -> &'static Path {
    Path::new("s3://b/team/aws.state.json")
}

/// The Sealed error of opening `bytes` with `s`, naming the file, provider and key id;
/// its reason.
#[track_caller]
fn sealed_reason(s: &Sealer, bytes: &[u8], key_id: &str) -> String {
    let e = s.open(bytes, path()).unwrap_err();
    let msg = e.to_string();
    let StateError::Sealed {
        provider,
        key_id: k,
        reason,
        ..
    } = e
    else {
        panic!("expected Sealed, got {e:?}")
    };
    assert_eq!(
        (provider.as_str(), k.as_str()),
        ("aws_kms", key_id),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!(
            "`s3://b/team/aws.state.json` is encrypted with aws_kms key `{key_id}`: "
        )),
        "{msg}"
    );
    reason
}

#[test]
fn a_state_sealed_with_a_kms_key_opens_with_that_key_however_it_is_named() {
    let (alias, id, arn) = new_key();
    let s = sealer(&alias);
    assert_eq!((s.provider(), s.key_id()), ("aws_kms", alias.as_str()));
    assert_eq!(
        format!("{s:?}"),
        format!("Sealer {{ key_provider: \"aws_kms\", key_id: \"{alias}\", .. }}")
    );
    let a = s.seal(DOC, path()).unwrap();
    let b = s.seal(DOC, path()).unwrap();
    assert!(is_sealed(&a));
    assert_ne!(a, b, "a new data key and nonce for every write");
    assert_eq!(
        sealed_header(&a),
        Some(("aws_kms".to_string(), alias.clone()))
    );
    let text = String::from_utf8(a.clone()).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "flyteinfra_sealed",
            "key_provider",
            "key_id",
            "wrapped_key",
            "nonce",
            "ciphertext"
        ]
    );
    assert_ne!(
        v["wrapped_key"],
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["wrapped_key"]
    );

    assert_eq!(s.open(&a, path()).unwrap(), DOC);
    // The same key by its id or ARN, in a new sealer (nothing cached).
    for name in [&id, &arn, &alias] {
        assert_eq!(sealer(name).open(&b, path()).unwrap(), DOC, "{name}");
    }
    // From the config's `KeySource`: the client starts without calling KMS (credentials
    // and the key are first used by a seal or open).
    let configured = Sealer::new(KeySource::AwsKms {
        key_id: alias.clone(),
        region: REGION.to_string(),
    })
    .unwrap();
    assert_eq!(
        (configured.provider(), configured.key_id()),
        ("aws_kms", alias.as_str())
    );
}

#[test]
fn a_missing_kms_key_is_one_clear_error_naming_it() {
    let (alias, _, _) = new_key();
    let sealed = sealer(&alias).seal(DOC, path()).unwrap();
    for missing in [
        format!("alias/nope-{}", unique_name()),
        "2b7a52c4-0d2b-4c8e-9a0f-3e1f5d6c7b8a".to_string(),
    ] {
        let s = sealer(&missing);
        let e = s.seal(DOC, path()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StateError::Seal { .. }), "{e:?}");
        assert!(
            msg.starts_with(&format!(
                "could not encrypt `s3://b/team/aws.state.json`: AWS KMS key `{missing}` \
                 in region `us-east-1`: GenerateDataKey: NotFoundException: "
            )),
            "{msg}"
        );
        assert!(
            msg.contains("the key does not exist in this region"),
            "{msg}"
        );

        let reason = sealed_reason(&s, &sealed, &alias);
        assert!(
            reason.starts_with(&format!(
                "the configured AWS KMS key `{missing}` in region `us-east-1` does not exist: "
            )),
            "{reason}"
        );
    }
}

#[test]
fn a_state_sealed_with_one_kms_key_does_not_open_with_another() {
    let (a, _, a_arn) = new_key();
    let (b, _, b_arn) = new_key();
    let sealed = sealer(&a).seal(DOC, path()).unwrap();
    let reason = sealed_reason(&sealer(&b), &sealed, &a);
    assert_eq!(
        reason,
        format!(
            "it was sealed with AWS KMS key `{a_arn}`, not the configured AWS KMS key `{b}` in \
             region `us-east-1` (`{b_arn}`): set `state.encryption` to the key it was sealed with"
        )
    );
    // Claiming the other key in the header does not help: the header is authenticated.
    let forged = String::from_utf8(sealed.clone()).unwrap().replacen(
        &format!("\"key_id\": \"{a}\""),
        &format!("\"key_id\": \"{b}\""),
        1,
    );
    assert_ne!(forged.as_bytes(), &sealed[..]);
    sealed_reason(&sealer(&b), forged.as_bytes(), &b);
    let reason = sealed_reason(&sealer(&a), forged.as_bytes(), &b);
    assert!(reason.starts_with("the file was changed: "), "{reason}");
    // Nor does a passphrase.
    let p = Sealer::new(KeySource::Passphrase {
        env: "FLYTEINFRA_STATE_PASSPHRASE".into(),
        passphrase: flyteinfra_core::Sensitive::new("p".into()),
    })
    .unwrap();
    let reason = sealed_reason(&p, &sealed, &a);
    assert!(
        reason.starts_with(
            "the configured key is a passphrase (from `FLYTEINFRA_STATE_PASSPHRASE`), not an \
             AWS KMS key"
        ),
        "{reason}"
    );
}

#[test]
fn a_changed_wrapped_key_or_ciphertext_fails() {
    let (alias, _, _) = new_key();
    let s = sealer(&alias);
    let sealed = s.seal(DOC, path()).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    let ct = v["ciphertext"].as_str().unwrap();
    let flipped = if ct.starts_with('A') { "B" } else { "A" };
    v["ciphertext"] = format!("{flipped}{}", &ct[1..]).into();
    let reason = sealed_reason(&s, v.to_string().as_bytes(), &alias);
    assert!(reason.starts_with("the file was changed: "), "{reason}");

    let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    v["wrapped_key"] = "AAAA".into();
    let reason = sealed_reason(&s, v.to_string().as_bytes(), &alias);
    assert!(reason.contains("InvalidCiphertextException"), "{reason}");
    assert_eq!(s.open(&sealed, path()).unwrap(), DOC);
}

/// The CLI seals state from async code: the sealer's own runtime thread makes that safe.
#[test]
fn sealing_works_inside_a_tokio_runtime() {
    let (alias, _, _) = new_key();
    let s = sealer(&alias);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sealed = s.seal(DOC, path()).unwrap();
        assert_eq!(s.open(&sealed, path()).unwrap(), DOC);
    });
    let current = rt();
    current.block_on(async {
        let sealed = s.seal(DOC, path()).unwrap();
        assert_eq!(s.open(&sealed, path()).unwrap(), DOC);
    });
}
