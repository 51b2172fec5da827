//! Helpers shared by the EC2 resource types (VPC, subnet, gateways, route tables, security
//! groups): identity tags, tag updates, and batched reads.
//!
//! EC2 objects have no unique names, so each create sets `flyteinfra:token` in the create
//! call itself and `find` looks the object up by that tag. Emulators do not honour every
//! tag filter (moto ignores it on DescribeNatGateways), so matches are checked again here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, ResourceType as Ec2Type, Tag, TagSpecification,
};
use flyteinfra_core::{
    Address, Attributes, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ErrorKind,
    FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse, ResourceType, Schema,
    UpdateRequest, UpdateResponse, Value, WaitRequest,
};

use crate::attrs::{self, TOKEN_TAG};
use crate::error::aws_err;

/// The tag filter that finds an object by its token.
pub(crate) fn token_filter(token: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TOKEN_TAG}"))
        .values(token)
        .build()
}

/// Whether `tags` carry `token`.
pub(crate) fn has_token(tags: &[Tag], token: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(TOKEN_TAG) && t.value() == Some(token))
}

/// The tags of a create call: the input `tags` plus the token tag.
pub(crate) fn tag_spec(kind: Ec2Type, token: &str, inputs: &Attributes) -> TagSpecification {
    let mut tags = attrs::tags(inputs);
    tags.insert(TOKEN_TAG.to_string(), token.to_string());
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags.into_iter().map(|(k, v)| tag(k, v)).collect()))
        .build()
}

fn tag(k: impl Into<String>, v: impl Into<String>) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Tags as the `tags` attribute (without the token tag).
pub(crate) fn tags_attr(tags: &[Tag]) -> Value {
    attrs::tags_value(tag_map(tags))
}

/// Tags as a plain map (token tag included, AWS's own `aws:` tags left out).
pub(crate) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .filter(|(k, _)| !super::aws_reserved_tag(k))
        .collect()
}

/// The tags of `id` as EC2 has them now (token tag included, `aws:` tags left out). Updates
/// compare with these, not with the state, so tags someone else added are removed too.
pub(crate) async fn live_tags(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let out = ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(id).build())
        .send()
        .await
        .map_err(|e| aws_err("DescribeTags", e))?;
    Ok(out
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .filter(|(k, _)| !super::aws_reserved_tag(k))
        .collect())
}

/// Brings the object's tags, as the cloud has them now, to the input `tags` (tags someone
/// else added are removed too; `aws:` ones are never touched).
pub(crate) async fn sync_live_tags(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    inputs: &Attributes,
) -> Result<(), ProviderError> {
    sync_tags(ec2, id, &live_tags(ec2, id).await?, inputs).await
}

/// Makes the tags of `id` equal to the input `tags`, given the current ones as the cloud has
/// them (the token tag is never touched): CreateTags for new or changed values, DeleteTags
/// for removed keys.
pub(crate) async fn sync_tags(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    current: &BTreeMap<String, String>,
    inputs: &Attributes,
) -> Result<(), ProviderError> {
    let desired = attrs::tags(inputs);
    let set: Vec<Tag> = desired
        .iter()
        .filter(|(k, v)| k.as_str() != TOKEN_TAG && current.get(*k) != Some(*v))
        .map(|(k, v)| tag(k, v))
        .collect();
    let removed: Vec<Tag> = current
        .keys()
        .filter(|k| k.as_str() != TOKEN_TAG && !desired.contains_key(*k))
        .map(|k| Tag::builder().key(k).build())
        .collect();
    if !set.is_empty() {
        ec2.create_tags()
            .resources(id)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(|e| aws_err("CreateTags", e))?;
    }
    if !removed.is_empty() {
        ec2.delete_tags()
            .resources(id)
            .set_tags(Some(removed))
            .send()
            .await
            .map_err(|e| aws_err("DeleteTags", e))?;
    }
    Ok(())
}

/// What an earlier attempt of this create made, by `find` (the token lookup); nothing to
/// look for when the request is fresh (no earlier attempt can have sent its token).
pub(crate) async fn earlier<T>(
    req: &CreateRequest,
    find: impl Future<Output = Result<Option<T>, ProviderError>>,
) -> Result<Option<T>, ProviderError> {
    if req.fresh { Ok(None) } else { find.await }
}

/// An EC2 boolean attribute value.
pub(crate) fn bool_value(v: bool) -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(v).build()
}

/// `Ok(())` for a not-found error (deletes are idempotent), the error otherwise.
pub(crate) fn gone_is_ok<T>(r: Result<T, ProviderError>) -> Result<(), ProviderError> {
    match r {
        Err(e) if e.kind != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A follow-up call right after a create may not see the new object yet (EC2 is eventually
/// consistent): that is worth a retry, which finds the object by its token and resumes.
pub(crate) fn settling(e: ProviderError) -> ProviderError {
    if e.kind == ErrorKind::NotFound {
        ProviderError::new(
            ErrorKind::Transient,
            format!("{} (just created; not visible yet)", e.message),
        )
    } else {
        e
    }
}

/// The attributes of a just-created object, or a retryable error if the
/// describe does not show it yet.
pub(crate) async fn read_back<D: Describe + ?Sized>(
    d: &D,
    address: &Address,
    id: &str,
    inputs: &Attributes,
) -> Result<Attributes, ProviderError> {
    let req = ReadRequest {
        address: address.clone(),
        id: id.to_string(),
        prior_inputs: inputs.clone(),
        prior_attributes: Attributes::new(),
    };
    let found = d
        .describe(std::slice::from_ref(&req))
        .await
        .map_err(settling)?;
    found.get(id).cloned().ok_or_else(|| {
        ProviderError::new(
            ErrorKind::Transient,
            format!("`{id}` is not visible yet after its change"),
        )
    })
}

/// The attributes after an in-place update; the object being gone is a not-found error.
pub(crate) async fn read_updated<D: Describe + ?Sized>(
    d: &D,
    address: &Address,
    id: &str,
    inputs: &Attributes,
) -> Result<Attributes, ProviderError> {
    let req = ReadRequest {
        address: address.clone(),
        id: id.to_string(),
        prior_inputs: inputs.clone(),
        prior_attributes: Attributes::new(),
    };
    read_one(d, req).await?.attributes.ok_or_else(|| {
        ProviderError::new(
            ErrorKind::NotFound,
            format!("`{address}` (`{id}`) disappeared while being updated"),
        )
    })
}

/// One Describe* call for many objects, keyed by id.
#[async_trait]
pub(crate) trait Describe: Send + Sync {
    /// Describes the objects of `reqs` (non-empty, distinct ids) in one call. Objects
    /// missing from the answer (or gone for good, like a `deleted` NAT gateway) are absent
    /// from the map. An unknown id may fail the whole call with a not-found error.
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError>;
}

/// What differs between the EC2 resource types; [`Ec2`] makes one a [`ResourceType`] whose
/// `schema`, `read`, `read_many` (one batched describe) and `find` (by the token tag) are
/// written once, here.
#[async_trait]
pub(crate) trait Ec2Resource: Describe {
    /// The schema.
    fn schema(&self) -> &Schema;

    /// The object that carries `token` in its token tag, if any.
    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError>;

    /// [`ResourceType::create`].
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError>;

    /// [`ResourceType::wait_ready`]; by default one read (most EC2 objects are ready when
    /// the create returns).
    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let address = req.address.clone();
        let read = ReadRequest {
            address: req.address,
            id: req.id,
            prior_inputs: req.inputs,
            prior_attributes: Attributes::new(),
        };
        read_one(self, read).await?.attributes.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("`{address}` disappeared while being created"),
            )
        })
    }

    /// [`ResourceType::update`].
    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError>;

    /// [`ResourceType::delete`].
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError>;

    /// [`ResourceType::wait_deleted`]; by default nothing to wait for.
    async fn wait_deleted(&self, _req: WaitRequest) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// An EC2 type as a [`ResourceType`].
pub(crate) struct Ec2<T>(pub T);

#[async_trait]
impl<T: Ec2Resource> ResourceType for Ec2<T> {
    fn schema(&self) -> &Schema {
        self.0.schema()
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        read_one(&self.0, req).await
    }

    async fn read_many(&self, reqs: Vec<ReadRequest>) -> Vec<Result<ReadResponse, ProviderError>> {
        read_many(&self.0, reqs).await
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        Ok(FindResponse {
            id: self.0.find_id(&req.token).await?,
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        self.0.create(req).await
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        self.0.wait_ready(req).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        self.0.update(req).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.0.delete(req).await
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        self.0.wait_deleted(req).await
    }
}

/// The distinct ids of `reqs`, in order.
pub(crate) fn ids(reqs: &[ReadRequest]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    reqs.iter()
        .filter(|r| seen.insert(r.id.as_str()))
        .map(|r| r.id.clone())
        .collect()
}

/// `read` over [`Describe`]: not found → `None`.
pub(crate) async fn read_one<D: Describe + ?Sized>(
    d: &D,
    req: ReadRequest,
) -> Result<ReadResponse, ProviderError> {
    if req.id.is_empty() {
        return Ok(ReadResponse { attributes: None });
    }
    let found = match d.describe(std::slice::from_ref(&req)).await {
        Ok(found) => found,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(ReadResponse { attributes: None }),
        Err(e) => return Err(e),
    };
    Ok(ReadResponse {
        attributes: found.get(&req.id).cloned(),
    })
}

/// `read_many` over [`Describe`]: one call for all ids; if EC2 rejects the whole call
/// because one id is unknown, one call per id.
pub(crate) async fn read_many<D: Describe + ?Sized>(
    d: &D,
    reqs: Vec<ReadRequest>,
) -> Vec<Result<ReadResponse, ProviderError>> {
    let mut distinct = BTreeSet::new();
    let batch: Vec<ReadRequest> = reqs
        .iter()
        .filter(|r| !r.id.is_empty() && distinct.insert(r.id.clone()))
        .cloned()
        .collect();
    if batch.is_empty() {
        return reqs
            .iter()
            .map(|_| Ok(ReadResponse { attributes: None }))
            .collect();
    }
    match d.describe(&batch).await {
        Ok(found) => reqs
            .iter()
            .map(|r| {
                Ok(ReadResponse {
                    attributes: found.get(&r.id).cloned(),
                })
            })
            .collect(),
        Err(e) if e.kind == ErrorKind::NotFound && batch.len() > 1 => {
            let mut out = Vec::with_capacity(reqs.len());
            for r in reqs {
                out.push(read_one(d, r).await);
            }
            out
        }
        Err(e) if e.kind == ErrorKind::NotFound => reqs
            .iter()
            .map(|_| Ok(ReadResponse { attributes: None }))
            .collect(),
        Err(e) => reqs.iter().map(|_| Err(e.clone())).collect(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Requests and prerequisites for the EC2 types' moto tests.

    use crate::client::AwsClients;
    use crate::testutil;

    pub use flyteinfra_core::requests::{create, delete, find, read, refresh, update, wait};

    /// `ids` in descending order: an input list that is not sorted.
    pub fn unsorted(ids: &[&String]) -> flyteinfra_core::Value {
        let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into()
    }

    /// A fresh token.
    pub fn token() -> String {
        testutil::unique("fi-test")
    }

    /// A VPC made directly through the SDK (10.0.0.0/16).
    pub async fn vpc(c: &AwsClients) -> String {
        let out = c
            .ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .expect("CreateVpc");
        out.vpc()
            .and_then(|v| v.vpc_id())
            .expect("vpc id")
            .to_string()
    }

    /// A subnet of `vpc` made directly through the SDK.
    pub async fn subnet(c: &AwsClients, vpc: &str, cidr: &str) -> String {
        let out = c
            .ec2
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .availability_zone("us-east-1a")
            .send()
            .await
            .expect("CreateSubnet");
        out.subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_string()
    }
}
