//! `aws_iam_openid_connect_provider`.
//!
//! No TLS thumbprint is fetched or sent: `ThumbprintList` is optional in IAM's API, and
//! for an EKS issuer IAM secures the connection with its own trusted root CAs, so a
//! thumbprint would only be ignored (and would need a network fetch at plan time).
//!
//! IAM stores the URL without `https://`; `url` is reported with it (as the input, the
//! cluster's issuer URL, has it) and `issuer` without it (as trust-policy condition keys
//! use it). The ARN ends with that stored URL, which is how `find` matches.
//!
//! There is one provider per issuer and account, and a cluster flyteinfra did not make (an
//! `existing:` one) may have one already, made by eksctl or by hand, that other roles
//! trust: the create carries its token as a tag, and a provider is adopted (or found) only
//! with it; anyone else's is refused with the import hint rather than taken over (and one
//! day deleted).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iam::operation::get_open_id_connect_provider::GetOpenIdConnectProviderOutput;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};

use super::iam_role::{iam_tags, string_map, tag_changes};
use crate::attrs::{self, TOKEN_TAG, unordered};
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// `aws_iam_openid_connect_provider`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_iam_openid_connect_provider",
        doc: "The IAM OIDC provider for the EKS cluster's issuer (IRSA). No thumbprint is fetched.",
        fields: vec![
            Field::computed("id", "The cloud id (the ARN)."),
            Field::computed("arn", "The ARN."),
            Field::computed(
                "issuer",
                "The issuer without `https://`, as trust-policy condition keys use it.",
            ),
            Field::input("url", "The issuer URL.")
                .required()
                .force_new(),
            Field::input("client_ids", "Audiences (`sts.amazonaws.com`)."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_iam_openid_connect_provider` over IAM.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(IamOpenidConnectProvider {
        schema: schema(),
        iam: clients.iam.clone(),
    })
}

struct IamOpenidConnectProvider {
    schema: Schema,
    iam: aws_sdk_iam::Client,
}

/// The issuer (URL without scheme), as IAM stores it and condition keys use it.
fn issuer(url: &str) -> &str {
    url.strip_prefix("https://").unwrap_or(url)
}

impl IamOpenidConnectProvider {
    /// The ARN of the provider for `url`, if there is one.
    async fn find_arn(&self, url: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| aws_err("ListOpenIDConnectProviders", e))?;
        let want = issuer(url).trim_end_matches('/');
        Ok(out
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
            .find(|arn| {
                arn.split_once(":oidc-provider/")
                    .is_some_and(|(_, u)| u.trim_end_matches('/') == want)
            })
            .map(str::to_string))
    }

    /// The provider at `arn`, if it exists.
    async fn get(
        &self,
        arn: &str,
    ) -> Result<Option<GetOpenIdConnectProviderOutput>, ProviderError> {
        let out = self
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| aws_err("GetOpenIDConnectProvider", e));
        not_found_is_none(out)
    }

    /// Whether the provider at `arn` carries `token` (was made by that create).
    async fn carries(&self, arn: &str, token: &str) -> Result<bool, ProviderError> {
        Ok(self.get(arn).await?.is_some_and(|p| {
            p.tags()
                .iter()
                .any(|t| t.key() == TOKEN_TAG && t.value() == token)
        }))
    }

    async fn read_arn(
        &self,
        arn: &str,
        prior: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let Some(p) = self.get(arn).await? else {
            return Ok(None);
        };
        let stored = issuer(p.url().unwrap_or_default());
        Ok(Some(attrs::attrs([
            ("id", Value::from(arn)),
            ("arn", Value::from(arn)),
            ("issuer", Value::from(stored)),
            ("url", Value::from(format!("https://{stored}"))),
            (
                "client_ids",
                unordered(p.client_id_list().to_vec(), prior.get("client_ids")),
            ),
            (
                "tags",
                attrs::tags_value(
                    p.tags()
                        .iter()
                        .filter(|t| !super::aws_reserved_tag(t.key()))
                        .map(|t| (t.key().to_string(), t.value().to_string())),
                ),
            ),
        ])))
    }
}

#[async_trait]
impl ResourceType for IamOpenidConnectProvider {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self.read_arn(&req.id, &req.prior_inputs).await?,
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let id = match self.find_arn(attrs::s(&req.inputs, "url")?).await? {
            Some(arn) if self.carries(&arn, &req.token).await? => Some(arn),
            _ => None,
        };
        Ok(FindResponse { id })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let url = attrs::s(&req.inputs, "url")?;
        let client_ids = attrs::strings(&req.inputs, "client_ids");
        let mut tags = attrs::tags(&req.inputs);
        tags.insert(TOKEN_TAG.to_string(), req.token.clone());
        let tags = iam_tags(&tags)?;
        let out = self
            .iam
            .create_open_id_connect_provider()
            .url(url)
            .set_client_id_list(Some(client_ids).filter(|c| !c.is_empty()))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_err("CreateOpenIDConnectProvider", e));
        let arn = match out {
            Ok(o) => o
                .open_id_connect_provider_arn()
                .unwrap_or_default()
                .to_string(),
            // One provider per issuer and account: adopted when an earlier attempt of this
            // create made it (its token), its client ids and tags read back so any
            // difference shows in the next plan; anyone else's is refused.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let arn = self.find_arn(url).await?.ok_or(e)?;
                if !self.carries(&arn, &req.token).await? {
                    return Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "the IAM OIDC provider for `{url}` already exists and is not \
                             flyteinfra's (it does not carry this create's token); other roles \
                             may trust it, so flyteinfra never takes it over. To manage it with \
                             flyteinfra, run `flyteinfra import {} {arn}`",
                            req.address
                        ),
                    ));
                }
                let a = self.read_arn(&arn, &req.inputs).await?.ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::NotFound,
                        format!("OIDC provider `{arn}` disappeared while being adopted"),
                    )
                })?;
                return Ok(CreateResponse {
                    id: arn,
                    completion: Completion::Ready(a),
                });
            }
            Err(e) => return Err(e),
        };
        let mut a = req.inputs.clone();
        a.insert("id".into(), Value::from(arn.as_str()));
        a.insert("arn".into(), Value::from(arn.as_str()));
        a.insert("issuer".into(), Value::from(issuer(url)));
        Ok(CreateResponse {
            id: arn,
            completion: Completion::Ready(a),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let arn = req.id.as_str();
        let changed = |f: &str| req.changed.iter().any(|c| c == f);
        if changed("client_ids") {
            let current: BTreeSet<String> = attrs::strings(&req.prior, "client_ids")
                .into_iter()
                .collect();
            let desired: BTreeSet<String> = attrs::strings(&req.inputs, "client_ids")
                .into_iter()
                .collect();
            for id in desired.difference(&current) {
                self.iam
                    .add_client_id_to_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .client_id(id)
                    .send()
                    .await
                    .map_err(|e| aws_err("AddClientIDToOpenIDConnectProvider", e))?;
            }
            for id in current.difference(&desired) {
                self.iam
                    .remove_client_id_from_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .client_id(id)
                    .send()
                    .await
                    .map_err(|e| aws_err("RemoveClientIDFromOpenIDConnectProvider", e))?;
            }
        }
        if changed("tags") {
            let desired = attrs::tags(&req.inputs);
            // Compared with the provider's tags now, not the state's, so tags someone else
            // added are removed too.
            let now = self.read_arn(arn, &req.prior).await?.unwrap_or_default();
            let (removed, set) = tag_changes(&string_map(&now, "tags"), &desired);
            if !removed.is_empty() {
                self.iam
                    .untag_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .set_tag_keys(Some(removed))
                    .send()
                    .await
                    .map_err(|e| aws_err("UntagOpenIDConnectProvider", e))?;
            }
            if set {
                self.iam
                    .tag_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .set_tags(Some(iam_tags(&desired)?))
                    .send()
                    .await
                    .map_err(|e| aws_err("TagOpenIDConnectProvider", e))?;
            }
        }
        let mut a = req.prior.clone();
        a.extend(req.inputs.clone());
        Ok(UpdateResponse { attributes: a })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let out = self
            .iam
            .delete_open_id_connect_provider()
            .open_id_connect_provider_arn(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteOpenIDConnectProvider", e));
        not_found_is_none(out)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use flyteinfra_core::{Address, Progress};

    fn addr() -> Address {
        Address::new("aws_iam_openid_connect_provider", "eks")
    }

    #[tokio::test]
    async fn provider_lifecycle_and_idempotent_create() {
        let c = testutil::clients().await;
        let rt = build(&c);
        // moto gives every cluster the same issuer: use a URL of this test's own.
        let url = format!(
            "https://oidc.eks.us-east-1.amazonaws.com/id/{}",
            testutil::unique("ID")
        );
        let mut inputs = attrs::attrs([
            ("url", Value::from(url.as_str())),
            ("client_ids", Value::from(vec!["sts.amazonaws.com"])),
            (
                "tags",
                Value::Map([("Name".to_string(), Value::from("test"))].into()),
            ),
        ]);
        let create = |inputs: Attributes| {
            rt.create(CreateRequest {
                address: addr(),
                inputs,
                token: "tok".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
        };
        let created = create(inputs.clone()).await.unwrap();
        let Completion::Ready(a) = created.completion else {
            panic!("IAM is synchronous")
        };
        assert_eq!(a["issuer"], Value::from(&url["https://".len()..]));
        assert!(
            created.id.ends_with(&url["https://".len()..]),
            "{}",
            created.id
        );

        let read = |inputs: Attributes| {
            rt.read(ReadRequest {
                address: addr(),
                id: created.id.clone(),
                prior_inputs: inputs,
                prior_attributes: Attributes::new(),
            })
        };
        let got = read(inputs.clone()).await.unwrap().attributes.unwrap();
        assert_eq!(got, a, "read agrees with create");

        let again = create(inputs.clone()).await.unwrap();
        assert_eq!(again.id, created.id, "an existing provider is adopted");
        let found = rt
            .find(FindRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id.as_deref(), Some(created.id.as_str()));
        // Another deployment's create neither finds nor takes it.
        let other = FindRequest {
            address: addr(),
            inputs: inputs.clone(),
            token: "other".into(),
            sent_at: Some(std::time::SystemTime::now()),
        };
        assert_eq!(rt.find(other).await.unwrap().id, None);
        let theirs = rt
            .create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "other".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap_err();
        assert_eq!(theirs.kind, ErrorKind::AlreadyExists, "{theirs}");
        assert!(
            theirs.message.contains(&format!(
                "flyteinfra import aws_iam_openid_connect_provider.eks {}",
                created.id
            )),
            "{theirs}"
        );

        // moto 5.1.22 has no Add/RemoveClientIDToOpenIDConnectProvider: tags only.
        inputs.insert("tags".into(), Value::Map(Default::default()));
        rt.update(UpdateRequest {
            address: addr(),
            id: created.id.clone(),
            prior: got,
            inputs: inputs.clone(),
            changed: vec!["tags".into()],
            progress: Progress::none(addr()),
        })
        .await
        .unwrap();
        let got = read(inputs.clone()).await.unwrap().attributes.unwrap();
        assert_eq!(got["tags"], inputs["tags"]);

        for _ in 0..2 {
            let del = rt
                .delete(DeleteRequest {
                    address: addr(),
                    id: created.id.clone(),
                    attributes: Attributes::new(),
                    force: false,
                    progress: Progress::none(addr()),
                })
                .await
                .unwrap();
            assert!(del.done);
        }
        assert!(read(inputs.clone()).await.unwrap().attributes.is_none());
    }
}
