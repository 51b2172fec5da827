//! `aws_s3_bucket`.
//!
//! A bucket plus the configurations flyteinfra manages on it: public-access block, default
//! encryption, versioning, tags and one lifecycle rule (ours, by id; other rules are kept).
//! The bucket name is the id. Objects are deleted only when the delete is asked to
//! (`force`, from `force_destroy`); otherwise deleting a bucket that still holds data is a
//! `Conflict` (and plans refuse it before, through `holds_contents`).
//!
//! Ownership: a bucket carries the create's token as the `flyteinfra:token` tag (hidden
//! from reads, kept by updates). S3 makes the bucket before it can be tagged, so a create
//! that meets an existing bucket of its name (us-east-1 answers 200, other regions
//! `BucketAlreadyOwnedByYou`) takes it as its own only when it carries the token or, untagged,
//! was made no earlier than the intent was first sent (ListBuckets' `CreationDate` against
//! `sent_at`, within [`CLOCK_SKEW_MARGIN`]): a run killed between CreateBucket and
//! PutBucketTagging. Any other bucket of that name is someone else's: the create fails,
//! naming `flyteinfra import`, and `find` does not find it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use flyteinfra_core::{
    Address, Attributes, CLOCK_SKEW_MARGIN, Completion, ContentsRequest, CreateRequest,
    CreateResponse, DeleteRequest, DeleteResponse, ErrorKind, Field, FindRequest, FindResponse,
    ProviderError, ReadRequest, ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse,
    Value, made_by_this_intent,
};

use crate::attrs::{self, TOKEN_TAG};
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// `aws_s3_bucket`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_s3_bucket",
        doc: "An S3 bucket with all four public-access blocks, default encryption and versioning.",
        fields: vec![
            Field::computed("id", "The cloud id (the bucket name)."),
            Field::computed("arn", "The ARN."),
            Field::input("bucket", "The globally unique name.")
                .required()
                .force_new(),
            Field::input("region", "The region.").required().force_new(),
            Field::input("versioning", "Object versioning."),
            Field::input("encryption", "Default encryption (`AES256`)."),
            Field::input("block_public_access", "All four public-access blocks."),
            Field::input("expire_after_days", "Lifecycle expiry of objects, if any."),
            Field::input("tags", "Tags."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_s3_bucket` over S3.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(S3Bucket {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct S3Bucket {
    clients: AwsClients,
    schema: Schema,
}

/// The id of the lifecycle rule flyteinfra owns on a bucket.
const EXPIRY_RULE: &str = "flyteinfra-expire-objects";

/// The configurations flyteinfra manages, in the order a create applies them. Tags come
/// first: they carry the token, so a run killed after CreateBucket leaves the bucket
/// untagged for as short a time as possible.
const CONFIGS: &[&str] = &[
    "tags",
    "block_public_access",
    "encryption",
    "versioning",
    "expire_after_days",
];

impl S3Bucket {
    /// A client for `region` (the shared one when it is the provider's region).
    fn s3(&self, region: Option<&str>) -> aws_sdk_s3::Client {
        match region {
            Some(r) if r != self.clients.region => {
                let conf = self
                    .clients
                    .s3
                    .config()
                    .to_builder()
                    .region(Region::new(r.to_string()))
                    .build();
                aws_sdk_s3::Client::from_conf(conf)
            }
            _ => self.clients.s3.clone(),
        }
    }

    /// The region of `bucket`, or `None` if it does not exist.
    async fn head(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Result<Option<String>, ProviderError> {
        let out = s3
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_err("HeadBucket", e));
        let Some(out) = not_found_is_none(out)? else {
            return Ok(None);
        };
        if let Some(r) = out.bucket_region() {
            return Ok(Some(r.to_string()));
        }
        let loc = s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_err("GetBucketLocation", e));
        Ok(
            not_found_is_none(loc)?.map(|l| match l.location_constraint().map(|c| c.as_str()) {
                None | Some("") => "us-east-1".to_string(),
                Some("EU") => "eu-west-1".to_string(),
                Some(r) => r.to_string(),
            }),
        )
    }

    /// The bucket's attributes, or `None` if it does not exist.
    ///
    /// With its region known (the `region` input), HeadBucket is not needed: the reads are
    /// sent to that region and GetBucketVersioning says whether the bucket exists. A bucket
    /// that lives elsewhere answers with a redirect; then HeadBucket finds its region, and
    /// the attributes show it (as drift).
    async fn read_bucket(
        &self,
        bucket: &str,
        region: Option<&str>,
        known: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        if let Some(r) = region {
            match self.read_in(bucket, r, known).await {
                Err(e) if moved(&e) => {}
                other => return other,
            }
        }
        let Some(actual) = self.head(&self.s3(region), bucket).await? else {
            return Ok(None);
        };
        self.read_in(bucket, &actual, known).await
    }

    /// [`Self::read_bucket`] in `region`.
    async fn read_in(
        &self,
        bucket: &str,
        region: &str,
        known: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        // Fewest calls: the lifecycle rule is read only when the config manages it (or on
        // import, when nothing is known yet).
        let read_lifecycle = known.is_empty() || known.contains_key("expire_after_days");
        let s3 = self.s3(Some(region));
        let versioning = async {
            let out = s3
                .get_bucket_versioning()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| s3_err("GetBucketVersioning", e));
            // NoSuchBucket: the bucket is gone (versioning itself always answers).
            Ok::<_, ProviderError>(
                not_found_is_none(out)?
                    .map(|o| o.status() == Some(&BucketVersioningStatus::Enabled)),
            )
        };
        let encryption = async {
            let out = s3.get_bucket_encryption().bucket(bucket).send().await;
            // An S3-compatible store without this API has no such setting.
            if unsupported(&out) {
                return Ok(None);
            }
            let out = out.map_err(|e| s3_err("GetBucketEncryption", e));
            Ok::<_, ProviderError>(not_found_is_none(out)?.and_then(|o| {
                o.server_side_encryption_configuration()?
                    .rules()
                    .iter()
                    .find_map(|r| r.apply_server_side_encryption_by_default())
                    .map(|d| d.sse_algorithm().as_str().to_string())
            }))
        };
        let public_access = async {
            let out = s3.get_public_access_block().bucket(bucket).send().await;
            // MinIO, for one, has no public-access block (its buckets are private).
            if unsupported(&out) {
                return Ok(false);
            }
            let out = out.map_err(|e| s3_err("GetPublicAccessBlock", e));
            Ok::<_, ProviderError>(not_found_is_none(out)?.is_some_and(|o| {
                o.public_access_block_configuration().is_some_and(|c| {
                    c.block_public_acls() == Some(true)
                        && c.ignore_public_acls() == Some(true)
                        && c.block_public_policy() == Some(true)
                        && c.restrict_public_buckets() == Some(true)
                })
            }))
        };
        let tags = async {
            let out = s3
                .get_bucket_tagging()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| s3_err("GetBucketTagging", e));
            Ok::<_, ProviderError>(
                not_found_is_none(out)?
                    .map(|o| {
                        o.tag_set()
                            .iter()
                            .filter(|t| !super::aws_reserved_tag(t.key()))
                            .map(|t| (t.key().to_string(), t.value().to_string()))
                            .collect::<BTreeMap<_, _>>()
                    })
                    .unwrap_or_default(),
            )
        };
        let expiry = async {
            if !read_lifecycle {
                return Ok(None);
            }
            let rules = lifecycle_rules(&s3, bucket).await?;
            Ok::<_, ProviderError>(
                rules
                    .iter()
                    .find(|r| {
                        r.id() == Some(EXPIRY_RULE) && *r.status() == ExpirationStatus::Enabled
                    })
                    .and_then(|r| r.expiration()?.days()),
            )
        };
        let (versioning, encryption, public_access, tags, expiry) =
            tokio::try_join!(versioning, encryption, public_access, tags, expiry)?;
        let Some(versioning) = versioning else {
            return Ok(None);
        };

        let mut a = attrs::attrs([
            ("id", Value::Str(bucket.to_string())),
            ("arn", Value::Str(format!("arn:aws:s3:::{bucket}"))),
            ("bucket", Value::Str(bucket.to_string())),
            ("region", Value::Str(region.to_string())),
            ("versioning", Value::Bool(versioning)),
            ("block_public_access", Value::Bool(public_access)),
            ("tags", attrs::tags_value(tags)),
        ]);
        if let Some(alg) = encryption {
            a.insert("encryption".into(), Value::Str(alg));
        }
        if let Some(days) = expiry {
            a.insert("expire_after_days".into(), Value::Int(days.into()));
        }
        Ok(Some(a))
    }

    /// Puts (or removes) each configuration in `fields` as `inputs` say. On a bucket this
    /// call just created (`fresh`), "off" and "absent" are already true and are skipped.
    /// The tag set always carries the token tag: `token` (a create), or else the one the
    /// bucket has (an update; PutBucketTagging replaces the whole set).
    async fn configure(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        inputs: &Attributes,
        fields: &[&str],
        fresh: bool,
        token: Option<&str>,
    ) -> Result<(), ProviderError> {
        for &field in CONFIGS.iter().filter(|f| fields.contains(f)) {
            match field {
                "block_public_access" => match attrs::b(inputs, field) {
                    Some(true) => {
                        let all = PublicAccessBlockConfiguration::builder()
                            .block_public_acls(true)
                            .ignore_public_acls(true)
                            .block_public_policy(true)
                            .restrict_public_buckets(true)
                            .build();
                        s3.put_public_access_block()
                            .bucket(bucket)
                            .public_access_block_configuration(all)
                            .send()
                            .await
                            .map_err(|e| s3_err("PutPublicAccessBlock", e))?;
                    }
                    // Off: no block. (New buckets get all four blocks by default, so even
                    // a fresh bucket needs this when asked to be open.)
                    Some(false) => delete_public_access_block(s3, bucket).await?,
                    None if !fresh => delete_public_access_block(s3, bucket).await?,
                    None => {}
                },
                "encryption" => match attrs::opt_s(inputs, field) {
                    Some(alg) => {
                        let alg = sse_algorithm(alg)?;
                        let rule = ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(alg)
                                    .build()
                                    .map_err(build_err)?,
                            )
                            .build();
                        s3.put_bucket_encryption()
                            .bucket(bucket)
                            .server_side_encryption_configuration(
                                ServerSideEncryptionConfiguration::builder()
                                    .rules(rule)
                                    .build()
                                    .map_err(build_err)?,
                            )
                            .send()
                            .await
                            .map_err(|e| s3_err("PutBucketEncryption", e))?;
                    }
                    None if !fresh => {
                        let out = s3
                            .delete_bucket_encryption()
                            .bucket(bucket)
                            .send()
                            .await
                            .map_err(|e| s3_err("DeleteBucketEncryption", e));
                        not_found_is_none(out)?;
                    }
                    None => {}
                },
                "versioning" => {
                    let on = attrs::b(inputs, field).unwrap_or(false);
                    // A bucket that never had versioning cannot be "unversioned" again,
                    // only suspended; a fresh one is already off.
                    if on || !fresh {
                        let status = if on {
                            BucketVersioningStatus::Enabled
                        } else {
                            BucketVersioningStatus::Suspended
                        };
                        s3.put_bucket_versioning()
                            .bucket(bucket)
                            .versioning_configuration(
                                VersioningConfiguration::builder().status(status).build(),
                            )
                            .send()
                            .await
                            .map_err(|e| s3_err("PutBucketVersioning", e))?;
                    }
                }
                "tags" => {
                    let mut tags = attrs::tags(inputs);
                    let token = match token {
                        Some(t) => Some(t.to_string()),
                        None => bucket_tags(s3, bucket).await?.remove(TOKEN_TAG),
                    };
                    // Identity, not configuration: never taken from the inputs.
                    tags.remove(TOKEN_TAG);
                    if let Some(t) = token {
                        tags.insert(TOKEN_TAG.to_string(), t);
                    }
                    if !tags.is_empty() {
                        let set = tags
                            .into_iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build())
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(build_err)?;
                        s3.put_bucket_tagging()
                            .bucket(bucket)
                            .tagging(
                                Tagging::builder()
                                    .set_tag_set(Some(set))
                                    .build()
                                    .map_err(build_err)?,
                            )
                            .send()
                            .await
                            .map_err(|e| s3_err("PutBucketTagging", e))?;
                    } else if !fresh {
                        s3.delete_bucket_tagging()
                            .bucket(bucket)
                            .send()
                            .await
                            .map_err(|e| s3_err("DeleteBucketTagging", e))?;
                    }
                }
                "expire_after_days" => {
                    let days = attrs::i(inputs, field);
                    if days.is_some() || !fresh {
                        set_expiry(s3, bucket, days).await?;
                    }
                }
                _ => unreachable!("CONFIGS lists the fields"),
            }
        }
        Ok(())
    }

    /// Whether `bucket` (which exists) is flyteinfra's for this intent: it carries `token`
    /// (looked up only when `tagged` may be true), or it was made no earlier than the intent
    /// was sent (`since`), so it is the one a run killed before tagging it made.
    async fn owned(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        token: &str,
        tagged: bool,
        since: Option<SystemTime>,
    ) -> Result<bool, ProviderError> {
        if tagged
            && bucket_tags(s3, bucket)
                .await?
                .get(TOKEN_TAG)
                .map(String::as_str)
                == Some(token)
        {
            return Ok(true);
        }
        Ok(made_by_this_intent(self.created(bucket).await?, since))
    }

    /// Succeeds when the existing `bucket` a create met is this create's (see
    /// [`Self::owned`]); otherwise the import hint. Without a recorded `sent_at`, the time
    /// this call started stands in for it.
    async fn claim(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        req: &CreateRequest,
        started: SystemTime,
    ) -> Result<(), ProviderError> {
        // A fresh token was never sent before, so it cannot be on the bucket.
        let since = req.sent_at.or(Some(started));
        let ours = self
            .owned(s3, bucket, &req.token, !req.fresh, since)
            .await
            .map_err(not_yet_visible)?;
        if ours {
            Ok(())
        } else {
            Err(not_ours(&req.address, bucket))
        }
    }

    /// When `bucket` was made, as ListBuckets reports it. The bucket exists, so a listing
    /// without it is S3's eventual consistency (a bucket just made): a transient error.
    async fn created(&self, bucket: &str) -> Result<Option<SystemTime>, ProviderError> {
        let mut page: Option<String> = None;
        loop {
            // The prefix narrows the listing; the name is still matched exactly.
            let out = self
                .clients
                .s3
                .list_buckets()
                .prefix(bucket)
                .set_continuation_token(page)
                .send()
                .await
                .map_err(|e| s3_err("ListBuckets", e))?;
            if let Some(b) = out.buckets().iter().find(|b| b.name() == Some(bucket)) {
                return Ok(b
                    .creation_date()
                    .and_then(|d| SystemTime::try_from(*d).ok()));
            }
            match out.continuation_token() {
                Some(t) if !t.is_empty() => page = Some(t.to_string()),
                _ => {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        format!("bucket `{bucket}` is not listed yet after its creation"),
                    ));
                }
            }
        }
    }
}

/// The error of a create that met someone else's bucket of its name.
fn not_ours(address: &Address, bucket: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::AlreadyExists,
        format!(
            "bucket `{bucket}` already exists and is not flyteinfra's: it carries no \
             `{TOKEN_TAG}` tag of this deployment and was made before this create was sent \
             (allowing {}s of clock skew); flyteinfra never takes over a bucket it did not \
             make. To manage it with flyteinfra, run `flyteinfra import {address} {bucket}`; \
             otherwise choose another name",
            CLOCK_SKEW_MARGIN.as_secs()
        ),
    )
}

/// The tags of `bucket` (none = empty).
async fn bucket_tags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let out = s3
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| s3_err("GetBucketTagging", e));
    Ok(not_found_is_none(out)?
        .map(|o| {
            o.tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

#[async_trait]
impl ResourceType for S3Bucket {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let region = attrs::opt_s(&req.prior_inputs, "region");
        Ok(ReadResponse {
            attributes: self.read_bucket(&req.id, region, &req.prior_inputs).await?,
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let bucket = attrs::s(&req.inputs, "bucket")?;
        let s3 = self.s3(attrs::opt_s(&req.inputs, "region"));
        let Some(region) = self.head(&s3, bucket).await? else {
            return Ok(FindResponse { id: None });
        };
        // A bucket of this name that is not provably this intent's is someone else's.
        let ours = self
            .owned(
                &self.s3(Some(&region)),
                bucket,
                &req.token,
                true,
                req.sent_at,
            )
            .await?;
        Ok(FindResponse {
            id: ours.then(|| bucket.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let bucket = attrs::s(&req.inputs, "bucket")?;
        let region = attrs::s(&req.inputs, "region")?;
        if let Some(alg) = attrs::opt_s(&req.inputs, "encryption") {
            sse_algorithm(alg)?;
        }
        let s3 = self.s3(Some(region));
        let mut create = s3.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        let started = SystemTime::now();
        let fresh = match create.send().await {
            // Outside us-east-1 S3 refuses a name that exists: this call made the bucket.
            Ok(_) if region != "us-east-1" => true,
            // us-east-1 answers 200 for a bucket this account already has (elsewhere that
            // is BucketAlreadyOwnedByYou): ours only with proof. It is new when no earlier
            // attempt can have made it.
            Ok(_) => {
                self.claim(&s3, bucket, &req, started).await?;
                req.fresh
            }
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => {
                self.claim(&s3, bucket, &req, started).await?;
                false
            }
            Err(e) => return Err(s3_err("CreateBucket", e)),
        };
        self.configure(&s3, bucket, &req.inputs, CONFIGS, fresh, Some(&req.token))
            .await
            .map_err(not_yet_visible)?;
        let attributes = self
            .read_bucket(bucket, Some(region), &req.inputs)
            .await?
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Transient,
                    format!("bucket `{bucket}` is not visible yet after its creation"),
                )
            })?;
        Ok(CreateResponse {
            id: bucket.to_string(),
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let region = attrs::opt_s(&req.inputs, "region");
        if let Some(alg) = attrs::opt_s(&req.inputs, "encryption") {
            sse_algorithm(alg)?;
        }
        let s3 = self.s3(region);
        let fields: Vec<&str> = req.changed.iter().map(String::as_str).collect();
        self.configure(&s3, &req.id, &req.inputs, &fields, false, None)
            .await?;
        let attributes = self
            .read_bucket(&req.id, region, &req.inputs)
            .await?
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!("bucket `{}` no longer exists", req.id),
                )
            })?;
        Ok(UpdateResponse { attributes })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let s3 = self.s3(attrs::opt_s(&req.attributes, "region"));
        let mut emptied = false;
        loop {
            match s3.delete_bucket().bucket(&req.id).send().await {
                Ok(_) => return Ok(DeleteResponse { done: true }),
                // Tried first, so an empty bucket (the usual case) costs no listing.
                Err(e) if e.code() == Some("BucketNotEmpty") && req.force && !emptied => {
                    empty_bucket(&s3, &req.id, &req.progress).await?;
                    emptied = true;
                }
                Err(e) if e.code() == Some("BucketNotEmpty") => {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "bucket `{}` still holds data (objects or object versions), and its \
                             delete may not delete them (force_destroy is off){}",
                            req.id,
                            if emptied {
                                "; objects were written while it was being emptied"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                Err(e) => {
                    not_found_is_none::<()>(Err(s3_err("DeleteBucket", e)))?;
                    return Ok(DeleteResponse { done: true });
                }
            }
        }
    }

    async fn holds_contents(&self, req: ContentsRequest) -> Result<Option<bool>, ProviderError> {
        let s3 = self.s3(attrs::opt_s(&req.attributes, "region"));
        // One listing of page size 1: any object, version or delete marker is enough.
        let out = s3
            .list_object_versions()
            .bucket(&req.id)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| s3_err("ListObjectVersions", e));
        Ok(Some(not_found_is_none(out)?.is_some_and(|o| {
            !o.versions().is_empty() || !o.delete_markers().is_empty()
        })))
    }
}

/// Deletes every object version and delete marker in `bucket`, a page (up to 1,000) per
/// DeleteObjects call, listing from the start each time so objects written meanwhile go
/// too. Asked for only through `force_destroy`.
async fn empty_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    progress: &flyteinfra_core::Progress,
) -> Result<(), ProviderError> {
    let mut deleted = 0usize;
    let mut previous = Vec::new();
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_err("ListObjectVersions", e))?;
        let items: Vec<ObjectIdentifier> = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key?)
                    .set_version_id(version.map(str::to_string))
                    .build()
                    .ok()
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        // The same page twice: its deletes did not take, and listing again would spin.
        if items == previous {
            return Err(ProviderError::new(
                ErrorKind::Permanent,
                format!(
                    "emptying bucket `{bucket}`: {} objects and versions are still listed \
                     after being deleted",
                    items.len()
                ),
            ));
        }
        previous.clone_from(&items);
        let n = items.len();
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(
                Delete::builder()
                    .set_objects(Some(items))
                    .quiet(true)
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| s3_err("DeleteObjects", e))?;
        if let Some(first) = out.errors().first() {
            return Err(ProviderError::new(
                ErrorKind::Permanent,
                format!(
                    "emptying bucket `{bucket}`: {} of {n} items could not be deleted; the \
                     first, `{}`: {} {}",
                    out.errors().len(),
                    first.key().unwrap_or_default(),
                    first.code().unwrap_or_default(),
                    first.message().unwrap_or_default()
                ),
            ));
        }
        deleted += n;
        progress.status(format!("emptying: {deleted} objects and versions deleted"));
    }
}

/// S3 is eventually consistent: a bucket just created may not be visible to the next call
/// yet. Retrying the whole create is safe (it is idempotent).
fn not_yet_visible(mut e: ProviderError) -> ProviderError {
    if e.kind == ErrorKind::NotFound {
        e.kind = ErrorKind::Transient;
    }
    e
}

/// The lifecycle rules of `bucket` (none configured = empty).
async fn lifecycle_rules(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Vec<LifecycleRule>, ProviderError> {
    let out = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| s3_err("GetBucketLifecycleConfiguration", e));
    Ok(not_found_is_none(out)?
        .map(|o| o.rules().to_vec())
        .unwrap_or_default())
}

/// Sets (or with `None` removes) flyteinfra's expiry rule, keeping every other rule.
async fn set_expiry(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    days: Option<i64>,
) -> Result<(), ProviderError> {
    let mut rules: Vec<LifecycleRule> = lifecycle_rules(s3, bucket)
        .await?
        .into_iter()
        .filter(|r| r.id() != Some(EXPIRY_RULE))
        .collect();
    if let Some(days) = days {
        let days = i32::try_from(days).ok().filter(|d| *d > 0).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                format!("input `expire_after_days` must be a positive number of days, not {days}"),
            )
        })?;
        rules.push(
            LifecycleRule::builder()
                .id(EXPIRY_RULE)
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .expiration(LifecycleExpiration::builder().days(days).build())
                .build()
                .map_err(build_err)?,
        );
    }
    if rules.is_empty() {
        let out = s3
            .delete_bucket_lifecycle()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_err("DeleteBucketLifecycle", e));
        not_found_is_none(out)?;
    } else {
        s3.put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| s3_err("PutBucketLifecycleConfiguration", e))?;
    }
    Ok(())
}

async fn delete_public_access_block(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<(), ProviderError> {
    let out = s3
        .delete_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| s3_err("DeletePublicAccessBlock", e));
    not_found_is_none(out)?;
    Ok(())
}

/// The default-encryption algorithm named by the `encryption` input.
fn sse_algorithm(alg: &str) -> Result<ServerSideEncryption, ProviderError> {
    match alg {
        "AES256" | "aws:kms" | "aws:kms:dsse" => Ok(ServerSideEncryption::from(alg)),
        other => Err(ProviderError::new(
            ErrorKind::InvalidInput,
            format!(
                "input `encryption` must be `AES256`, `aws:kms` or `aws:kms:dsse`, not `{other}`"
            ),
        )),
    }
}

fn build_err(e: aws_sdk_s3::error::BuildError) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, e.to_string())
}

/// [`aws_err`] plus S3's own spellings: a bodiless 404 (HEAD) and
/// `ServerSideEncryptionConfigurationNotFoundError` are not found, a conflicting operation
/// in progress is transient, and a name taken by another account says so.
/// Whether S3 answered that the bucket lives in another region than the one asked.
fn moved(e: &ProviderError) -> bool {
    [
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraint",
    ]
    .iter()
    .any(|c| e.message.contains(c))
}

/// Whether a read of an optional bucket setting failed because the store does not
/// implement that API (`501 NotImplemented`, as S3-compatible stores answer): the setting
/// is then absent, not an error. AWS itself implements every API this type reads.
fn unsupported<T, E>(out: &Result<T, SdkError<E, HttpResponse>>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(out, Err(e) if e.code() == Some("NotImplemented"))
}

fn s3_err<E>(what: &str, e: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().map(str::to_string);
    let status = e.raw_response().map(|r| r.status().as_u16());
    let mut err = aws_err(what, e);
    match code.as_deref() {
        Some(c) if c.ends_with("NotFoundError") || c == "NotFound" => {
            err.kind = ErrorKind::NotFound
        }
        Some("OperationAborted") => err.kind = ErrorKind::Transient,
        Some("BucketAlreadyExists") => {
            err.kind = ErrorKind::AlreadyExists;
            err.message = format!(
                "{what}: the bucket name is taken by another AWS account (bucket names are \
                 global); choose another name"
            );
        }
        None | Some("Unknown") if status == Some(404) => err.kind = ErrorKind::NotFound,
        // An answer without a body (HEAD) names no code: a 503 (SlowDown) or another 5xx is
        // still worth a retry.
        None | Some("Unknown") if status.is_some_and(|s| s == 429 || s >= 500) => {
            err.kind = flyteinfra_core::retry::kind_for_status(status.unwrap_or(500))
        }
        _ => {}
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use flyteinfra_core::{Progress, WaitRequest};

    fn addr() -> Address {
        Address::new("aws_s3_bucket", "data")
    }

    fn tags_of(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }

    fn inputs(bucket: &str, region: &str) -> Attributes {
        attrs::attrs([
            ("bucket", Value::Str(bucket.into())),
            ("region", Value::Str(region.into())),
            ("versioning", Value::Bool(true)),
            ("encryption", Value::Str("AES256".into())),
            ("block_public_access", Value::Bool(true)),
            ("expire_after_days", Value::Int(30)),
            ("tags", tags_of(&[("Name", "flyte"), ("team", "infra")])),
        ])
    }

    async fn create(
        rt: &Arc<dyn ResourceType>,
        inputs: &Attributes,
    ) -> Result<Attributes, ProviderError> {
        let resp = rt
            .create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await?;
        assert_eq!(Some(resp.id.as_str()), attrs::opt_s(inputs, "bucket"));
        match resp.completion {
            Completion::Ready(a) => Ok(a),
            Completion::InProgress => panic!("a bucket is ready at once"),
        }
    }

    async fn read(rt: &Arc<dyn ResourceType>, id: &str, prior: &Attributes) -> Option<Attributes> {
        rt.read(ReadRequest {
            address: addr(),
            id: id.into(),
            prior_inputs: prior.clone(),
            prior_attributes: Attributes::new(),
        })
        .await
        .unwrap()
        .attributes
    }

    async fn update(
        rt: &Arc<dyn ResourceType>,
        id: &str,
        prior: &Attributes,
        inputs: &Attributes,
        changed: &[&str],
    ) -> Attributes {
        rt.update(UpdateRequest {
            address: addr(),
            id: id.into(),
            prior: prior.clone(),
            inputs: inputs.clone(),
            changed: changed.iter().map(|s| s.to_string()).collect(),
            progress: Progress::none(addr()),
        })
        .await
        .unwrap()
        .attributes
    }

    async fn delete(rt: &Arc<dyn ResourceType>, id: &str) -> Result<bool, ProviderError> {
        rt.delete(DeleteRequest {
            address: addr(),
            id: id.into(),
            attributes: Attributes::new(),
            force: false,
            progress: Progress::none(addr()),
        })
        .await
        .map(|r| r.done)
    }

    #[tokio::test]
    async fn lifecycle_against_moto() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-data");
        let ins = inputs(&name, "us-east-1");
        let created = create(&rt, &ins).await.unwrap();
        let ready = rt
            .wait_ready(WaitRequest {
                address: addr(),
                id: name.clone(),
                inputs: ins.clone(),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap();
        assert_eq!(ready, created);

        let a = read(&rt, &name, &ins).await.unwrap();
        assert_eq!(a, created);
        assert_eq!(a["id"], Value::Str(name.clone()));
        assert_eq!(a["arn"], Value::Str(format!("arn:aws:s3:::{name}")));
        assert_eq!(a["bucket"], Value::Str(name.clone()));
        assert_eq!(a["region"], Value::Str("us-east-1".into()));
        assert_eq!(a["versioning"], Value::Bool(true));
        assert_eq!(a["encryption"], Value::Str("AES256".into()));
        assert_eq!(a["block_public_access"], Value::Bool(true));
        assert_eq!(a["expire_after_days"], Value::Int(30));
        assert_eq!(a["tags"], ins["tags"]);
        // Every input reads back as sent: no diff after create.
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }

        // Change everything.
        let mut new = ins.clone();
        new.insert("versioning".into(), Value::Bool(false));
        new.insert("encryption".into(), Value::Str("aws:kms".into()));
        new.insert("block_public_access".into(), Value::Bool(false));
        new.insert("tags".into(), tags_of(&[("Name", "flyte2")]));
        new.remove("expire_after_days");
        let changed = [
            "versioning",
            "encryption",
            "block_public_access",
            "tags",
            "expire_after_days",
        ];
        let updated = update(&rt, &name, &a, &new, &changed).await;
        let a = read(&rt, &name, &new).await.unwrap();
        assert_eq!(a, updated);
        assert_eq!(a["versioning"], Value::Bool(false));
        assert_eq!(a["encryption"], Value::Str("aws:kms".into()));
        assert_eq!(a["block_public_access"], Value::Bool(false));
        assert_eq!(a["tags"], tags_of(&[("Name", "flyte2")]));
        assert!(!a.contains_key("expire_after_days"));

        // And back, with another expiry and no tags.
        let mut back = ins.clone();
        back.insert("expire_after_days".into(), Value::Int(7));
        back.insert("tags".into(), tags_of(&[]));
        let updated = update(&rt, &name, &a, &back, &changed).await;
        let a = read(&rt, &name, &back).await.unwrap();
        assert_eq!(a, updated);
        for (k, v) in &back {
            assert_eq!(a.get(k), Some(v), "{k}");
        }

        assert!(delete(&rt, &name).await.unwrap());
        assert_eq!(read(&rt, &name, &back).await, None);
        // Gone is success.
        assert!(delete(&rt, &name).await.unwrap());
        let found = rt
            .find(FindRequest {
                address: addr(),
                inputs: back,
                token: "tok".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id, None);
    }

    #[tokio::test]
    async fn drift_made_outside_is_reported() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-drift");
        let ins = inputs(&name, "us-east-1");
        create(&rt, &ins).await.unwrap();
        // Someone else's lifecycle rule, which flyteinfra must keep.
        let mut rules = lifecycle_rules(&c.s3, &name).await.unwrap();
        rules.push(
            LifecycleRule::builder()
                .id("theirs")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                .expiration(LifecycleExpiration::builder().days(1).build())
                .build()
                .unwrap(),
        );
        c.s3.put_bucket_lifecycle_configuration()
            .bucket(&name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();

        c.s3.put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        c.s3.delete_public_access_block()
            .bucket(&name)
            .send()
            .await
            .unwrap();
        c.s3.delete_bucket_tagging()
            .bucket(&name)
            .send()
            .await
            .unwrap();
        let a = read(&rt, &name, &ins).await.unwrap();
        assert_eq!(a["versioning"], Value::Bool(false));
        assert_eq!(a["block_public_access"], Value::Bool(false));
        assert_eq!(a["tags"], tags_of(&[]));
        assert_eq!(a["expire_after_days"], Value::Int(30));

        // A partial block is not "blocked".
        c.s3.put_public_access_block()
            .bucket(&name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(false)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let a = read(&rt, &name, &ins).await.unwrap();
        assert_eq!(a["block_public_access"], Value::Bool(false));

        // Changed out of band: the default encryption (to SSE-KMS); deleted: the lifecycle
        // configuration. (A deleted encryption configuration is not a case here: S3 then
        // reports SSE-S3, moto nothing.)
        c.s3.put_bucket_encryption()
            .bucket(&name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(ServerSideEncryption::AwsKms)
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        c.s3.delete_bucket_lifecycle()
            .bucket(&name)
            .send()
            .await
            .unwrap();
        let drifted = read(&rt, &name, &ins).await.unwrap();
        assert!(!drifted.contains_key("expire_after_days"));
        assert_eq!(
            drifted.get("encryption"),
            Some(&Value::Str("aws:kms".into())),
            "{drifted:?}"
        );

        // The update puts back exactly what drifted.
        let changed = [
            "versioning",
            "block_public_access",
            "tags",
            "encryption",
            "expire_after_days",
        ];
        let fixed = update(&rt, &name, &drifted, &ins, &changed).await;
        for (k, v) in &ins {
            assert_eq!(fixed.get(k), Some(v), "{k}");
        }

        // Removing our expiry keeps someone else's rule.
        c.s3.put_bucket_lifecycle_configuration()
            .bucket(&name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(
                        LifecycleRule::builder()
                            .id("theirs")
                            .status(ExpirationStatus::Enabled)
                            .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                            .expiration(LifecycleExpiration::builder().days(1).build())
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let mut expiring = ins.clone();
        expiring.insert("expire_after_days".into(), Value::Int(9));
        let a = update(&rt, &name, &fixed, &expiring, &["expire_after_days"]).await;
        assert_eq!(a["expire_after_days"], Value::Int(9));
        let mut none = ins.clone();
        none.remove("expire_after_days");
        let a = update(&rt, &name, &a, &none, &["expire_after_days"]).await;
        assert!(!a.contains_key("expire_after_days"));
        let left: Vec<String> = lifecycle_rules(&c.s3, &name)
            .await
            .unwrap()
            .iter()
            .filter_map(|r| r.id().map(str::to_string))
            .collect();
        assert_eq!(left, vec!["theirs".to_string()]);

        assert!(delete(&rt, &name).await.unwrap());
    }

    async fn holds(rt: &Arc<dyn ResourceType>, name: &str) -> Option<bool> {
        rt.holds_contents(flyteinfra_core::requests::contents(
            "aws_s3_bucket",
            name,
            &Attributes::new(),
        ))
        .await
        .unwrap()
    }

    async fn put(c: &AwsClients, bucket: &str, key: &str) {
        c.s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_bucket_with_data_is_emptied_only_when_forced() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-full");
        let ins = inputs(&name, "us-east-1");
        create(&rt, &ins).await.unwrap();
        assert_eq!(holds(&rt, &name).await, Some(false));
        // Several versions of one key, then a delete marker on top: no current object is
        // left, yet the bucket is not empty.
        put(&c, &name, "metadata/a").await;
        put(&c, &name, "metadata/a").await;
        c.s3.delete_object()
            .bucket(&name)
            .key("metadata/a")
            .send()
            .await
            .unwrap();
        let listed = c.s3.list_objects_v2().bucket(&name).send().await.unwrap();
        assert_eq!(listed.key_count(), Some(0));
        assert_eq!(holds(&rt, &name).await, Some(true));

        let err = delete(&rt, &name).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(err.message.contains("still holds data"), "{}", err.message);
        assert!(err.message.contains("force_destroy"), "{}", err.message);
        assert!(read(&rt, &name, &ins).await.is_some());
        let versions =
            c.s3.list_object_versions()
                .bucket(&name)
                .send()
                .await
                .unwrap();
        assert_eq!(versions.versions().len(), 2);
        assert_eq!(versions.delete_markers().len(), 1);

        // Current objects as well (keys with spaces): every item goes.
        for i in 0..3 {
            put(&c, &name, &format!("raw/{i} with space")).await;
        }
        let forced = DeleteRequest {
            force: true,
            ..flyteinfra_core::requests::delete("aws_s3_bucket", &name, &Attributes::new())
        };
        assert!(rt.delete(forced.clone()).await.unwrap().done);
        assert!(read(&rt, &name, &ins).await.is_none());
        // Gone: nothing held, and deleting again is done.
        assert_eq!(holds(&rt, &name).await, Some(false));
        assert!(rt.delete(forced).await.unwrap().done);
    }

    /// A client for `region`, as the provider's region client is made.
    fn s3_in(c: &AwsClients, region: &str) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            c.s3.config()
                .to_builder()
                .region(Region::new(region.to_string()))
                .build(),
        )
    }

    /// Makes `name` in `region` as someone else (or a run killed before tagging) would:
    /// no flyteinfra tag, versioning off.
    async fn make_untagged(c: &AwsClients, name: &str, region: &str, tag: Option<(&str, &str)>) {
        let s3 = s3_in(c, region);
        let mut create = s3.create_bucket().bucket(name);
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        create.send().await.unwrap();
        if let Some((k, v)) = tag {
            s3.put_bucket_tagging()
                .bucket(name)
                .tagging(
                    Tagging::builder()
                        .tag_set(Tag::builder().key(k).value(v).build().unwrap())
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
    }

    fn request(ins: &Attributes, token: &str, fresh: bool, sent_at: SystemTime) -> CreateRequest {
        CreateRequest {
            address: addr(),
            inputs: ins.clone(),
            token: token.into(),
            fresh,
            sent_at: Some(sent_at),
            progress: Progress::none(addr()),
        }
    }

    fn find_request(ins: &Attributes, token: &str, sent_at: Option<SystemTime>) -> FindRequest {
        FindRequest {
            address: addr(),
            inputs: ins.clone(),
            token: token.into(),
            sent_at,
        }
    }

    /// In us-east-1 CreateBucket answers 200 for a bucket the account has, elsewhere
    /// BucketAlreadyOwnedByYou: neither makes it flyteinfra's. Nothing is changed on it.
    #[tokio::test]
    async fn a_bucket_without_proof_of_ownership_is_never_adopted() {
        let c = testutil::clients().await;
        let rt = build(&c);
        for region in ["us-east-1", "eu-west-1"] {
            let name = testutil::unique("flyte-theirs");
            make_untagged(&c, &name, region, Some(("owner", "them"))).await;
            let ins = inputs(&name, region);
            // The intent was sent well after the bucket was made.
            let later = SystemTime::now() + CLOCK_SKEW_MARGIN + Duration::from_secs(60);
            for fresh in [true, false] {
                let err = rt
                    .create(request(&ins, "fi-abcdef01-3", fresh, later))
                    .await
                    .unwrap_err();
                assert_eq!(err.kind, ErrorKind::AlreadyExists, "{region}: {err}");
                assert!(
                    err.message.contains(&format!(
                        "run `flyteinfra import aws_s3_bucket.data {name}`"
                    )) && err
                        .message
                        .contains("already exists and is not flyteinfra's"),
                    "{region}: {err}"
                );
            }
            let s3 = s3_in(&c, region);
            let tags = bucket_tags(&s3, &name).await.unwrap();
            assert_eq!(
                tags,
                BTreeMap::from([("owner".to_string(), "them".to_string())]),
                "{region}"
            );
            let v = s3
                .get_bucket_versioning()
                .bucket(&name)
                .send()
                .await
                .unwrap();
            assert_eq!(v.status(), None, "{region}");
            for sent_at in [Some(later), None] {
                let found = rt
                    .find(find_request(&ins, "fi-abcdef01-3", sent_at))
                    .await
                    .unwrap();
                assert_eq!(found.id, None, "{region}");
            }
            s3.delete_bucket().bucket(&name).send().await.unwrap();
        }
    }

    /// A run killed between CreateBucket and PutBucketTagging: the bucket was made after
    /// the intent was sent, so it is found and adopted; the re-sent create tags it.
    #[tokio::test]
    async fn an_untagged_bucket_made_after_the_intent_was_sent_is_adopted() {
        let c = testutil::clients().await;
        let rt = build(&c);
        for region in ["us-east-1", "eu-west-1"] {
            let name = testutil::unique("flyte-killed");
            // Whole seconds, as the intent journal records it.
            let sent = SystemTime::UNIX_EPOCH
                + Duration::from_secs(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs(),
                );
            make_untagged(&c, &name, region, None).await;
            let ins = inputs(&name, region);
            let token = "fi-abcdef01-4";
            let found = rt
                .find(find_request(&ins, token, Some(sent)))
                .await
                .unwrap();
            assert_eq!(found.id.as_deref(), Some(&*name), "{region}");
            let Completion::Ready(a) = rt
                .create(request(&ins, token, false, sent))
                .await
                .unwrap()
                .completion
            else {
                panic!("a bucket is ready at once")
            };
            for (k, v) in &ins {
                assert_eq!(a.get(k), Some(v), "{region}: {k}");
            }
            let s3 = s3_in(&c, region);
            let tags = bucket_tags(&s3, &name).await.unwrap();
            assert_eq!(tags.get(TOKEN_TAG).map(String::as_str), Some(token));
            // Tagged now: found by its token whenever the intent was sent.
            let found = rt.find(find_request(&ins, token, None)).await.unwrap();
            assert_eq!(found.id.as_deref(), Some(&*name), "{region}");
            // Another intent's token on a bucket made long before it: not found.
            let later = SystemTime::now() + CLOCK_SKEW_MARGIN + Duration::from_secs(60);
            let other = rt
                .find(find_request(&ins, "fi-abcdef01-5", Some(later)))
                .await
                .unwrap();
            assert_eq!(other.id, None, "{region}");
            // An update of the tags keeps the token tag.
            let mut new = ins.clone();
            new.insert("tags".into(), tags_of(&[("team", "ml")]));
            let up = update(&rt, &name, &a, &new, &["tags"]).await;
            assert_eq!(up["tags"], tags_of(&[("team", "ml")]));
            let tags = bucket_tags(&s3, &name).await.unwrap();
            assert_eq!(tags.get(TOKEN_TAG).map(String::as_str), Some(token));
            s3.delete_bucket().bucket(&name).send().await.unwrap();
        }
    }

    #[tokio::test]
    async fn other_region_and_idempotent_create() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-eu");
        let ins = inputs(&name, "eu-west-1");
        let first = create(&rt, &ins).await.unwrap();
        assert_eq!(first["region"], Value::Str("eu-west-1".into()));
        // With the region known, a read is the five Get calls (no HeadBucket).
        let before = c.calls();
        assert_eq!(read(&rt, &name, &ins).await.as_ref(), Some(&first));
        assert_eq!(c.calls() - before, 5);
        // Read as if it lived in us-east-1: S3 redirects, HeadBucket finds where it is,
        // and the region shows as the drift it is.
        let elsewhere = read(&rt, &name, &inputs(&name, "us-east-1")).await.unwrap();
        assert_eq!(elsewhere["region"], Value::Str("eu-west-1".into()));
        assert_eq!(elsewhere["versioning"], Value::Bool(true));
        // BucketAlreadyOwnedByYou: success, configured the same.
        let again = create(&rt, &ins).await.unwrap();
        assert_eq!(again, first);
        let found = rt
            .find(FindRequest {
                address: addr(),
                inputs: ins.clone(),
                token: "tok".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id.as_deref(), Some(name.as_str()));
        let bad = {
            let mut b = inputs(&testutil::unique("flyte-bad"), "us-east-1");
            b.insert("encryption".into(), Value::Str("rot13".into()));
            create(&rt, &b).await.unwrap_err()
        };
        assert_eq!(bad.kind, ErrorKind::InvalidInput);
        let region_attrs = attrs::attrs([("region", Value::Str("eu-west-1".into()))]);
        assert!(
            rt.delete(DeleteRequest {
                address: addr(),
                id: name.clone(),
                attributes: region_attrs,
                force: false,
                progress: Progress::none(addr()),
            })
            .await
            .unwrap()
            .done
        );
        assert_eq!(read(&rt, &name, &ins).await, None);
    }
}
