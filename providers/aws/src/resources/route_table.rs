//! `aws_route_table`.
//!
//! One table with one default route (`0.0.0.0/0` through an internet or NAT gateway) and
//! its subnet associations. Only that route is read or changed: the `local` route belongs
//! to the VPC (and moto omits its `Origin`, so nothing here looks at origins).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    ResourceType as Ec2Type, RouteTable as Ec2RouteTable, RouteTableAssociationStateCode,
};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest,
    UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

const DEFAULT_ROUTE: &str = "0.0.0.0/0";

/// `aws_route_table`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_route_table",
        doc: "A route table, its default route and its subnet associations.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("gateway_id", "Default route through an internet gateway."),
            Field::input("nat_gateway_id", "Default route through a NAT gateway."),
            Field::input("subnet_ids", "Associated subnets."),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_route_table` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(RouteTable {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct RouteTable {
    clients: AwsClients,
    schema: Schema,
}

/// Where the default route goes.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Target {
    Gateway(String),
    Nat(String),
}

impl Target {
    fn wanted(inputs: &Attributes) -> Result<Option<Target>, ProviderError> {
        match (
            attrs::opt_s(inputs, "gateway_id"),
            attrs::opt_s(inputs, "nat_gateway_id"),
        ) {
            (Some(_), Some(_)) => Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "set at most one of `gateway_id` and `nat_gateway_id`",
            )),
            (Some(g), None) => Ok(Some(Target::Gateway(g.to_string()))),
            (None, Some(n)) => Ok(Some(Target::Nat(n.to_string()))),
            (None, None) => Ok(None),
        }
    }

    fn current(table: &Ec2RouteTable) -> Option<Target> {
        let route = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(DEFAULT_ROUTE))?;
        if let Some(n) = route.nat_gateway_id() {
            return Some(Target::Nat(n.to_string()));
        }
        route
            .gateway_id()
            .filter(|g| *g != "local")
            .map(|g| Target::Gateway(g.to_string()))
    }
}

/// The table's subnet associations (not the main one): subnet id → association id.
fn associations(table: &Ec2RouteTable) -> BTreeMap<String, String> {
    table
        .associations()
        .iter()
        .filter(|a| a.main() != Some(true))
        .filter(|a| {
            a.association_state()
                .and_then(|s| s.state())
                .is_none_or(|s| {
                    matches!(
                        s,
                        RouteTableAssociationStateCode::Associated
                            | RouteTableAssociationStateCode::Associating
                    )
                })
        })
        .filter_map(|a| {
            Some((
                a.subnet_id()?.to_string(),
                a.route_table_association_id()?.to_string(),
            ))
        })
        .collect()
}

fn to_attrs(table: &Ec2RouteTable, prior_inputs: &Attributes) -> Attributes {
    let mut a = attrs::attrs([
        ("id", table.route_table_id().unwrap_or_default().into()),
        ("vpc_id", table.vpc_id().unwrap_or_default().into()),
        (
            "subnet_ids",
            attrs::unordered(
                associations(table).into_keys().collect(),
                prior_inputs.get("subnet_ids"),
            ),
        ),
        ("tags", common::tags_attr(table.tags())),
    ]);
    match Target::current(table) {
        Some(Target::Gateway(g)) => a.insert("gateway_id".into(), g.into()),
        Some(Target::Nat(n)) => a.insert("nat_gateway_id".into(), n.into()),
        None => None,
    };
    a
}

impl RouteTable {
    async fn describe_raw(
        &self,
        ids: Option<Vec<String>>,
        token: Option<&str>,
    ) -> Result<Vec<Ec2RouteTable>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_route_tables()
            .set_route_table_ids(ids)
            .set_filters(token.map(|t| vec![common::token_filter(t)]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeRouteTables", e))?;
        Ok(out.route_tables().to_vec())
    }

    async fn get(&self, id: &str) -> Result<Option<Ec2RouteTable>, ProviderError> {
        match self.describe_raw(Some(vec![id.to_string()]), None).await {
            Ok(tables) => Ok(tables.into_iter().find(|t| t.route_table_id() == Some(id))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_raw(&self, token: &str) -> Result<Option<Ec2RouteTable>, ProviderError> {
        Ok(self
            .describe_raw(None, Some(token))
            .await?
            .into_iter()
            .find(|t| common::has_token(t.tags(), token)))
    }

    /// Makes the default route and the associations of `table` match `inputs`.
    async fn converge(
        &self,
        table: &Ec2RouteTable,
        inputs: &Attributes,
    ) -> Result<(), ProviderError> {
        let ec2 = &self.clients.ec2;
        let id = table.route_table_id().unwrap_or_default();
        let want = Target::wanted(inputs)?;
        match (Target::current(table), &want) {
            (None, Some(t)) => {
                let call = ec2
                    .create_route()
                    .route_table_id(id)
                    .destination_cidr_block(DEFAULT_ROUTE);
                let call = match t {
                    Target::Gateway(g) => call.gateway_id(g),
                    Target::Nat(n) => call.nat_gateway_id(n),
                };
                // Already there: an earlier attempt whose answer was lost made it.
                match call.send().await.map_err(|e| aws_err("CreateRoute", e)) {
                    Err(e) if !e.message.starts_with("CreateRoute: RouteAlreadyExists") => {
                        return Err(e);
                    }
                    _ => {}
                }
            }
            (Some(have), Some(t)) if have != *t => {
                let call = ec2
                    .replace_route()
                    .route_table_id(id)
                    .destination_cidr_block(DEFAULT_ROUTE);
                let call = match t {
                    Target::Gateway(g) => call.gateway_id(g),
                    Target::Nat(n) => call.nat_gateway_id(n),
                };
                call.send().await.map_err(|e| aws_err("ReplaceRoute", e))?;
            }
            (Some(_), None) => {
                let r = ec2
                    .delete_route()
                    .route_table_id(id)
                    .destination_cidr_block(DEFAULT_ROUTE)
                    .send()
                    .await
                    .map_err(|e| aws_err("DeleteRoute", e));
                common::gone_is_ok(r)?;
            }
            _ => {}
        }

        let have = associations(table);
        let want: BTreeSet<String> = attrs::strings(inputs, "subnet_ids").into_iter().collect();
        for subnet in want.iter().filter(|s| !have.contains_key(*s)) {
            ec2.associate_route_table()
                .route_table_id(id)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(|e| aws_err("AssociateRouteTable", e))?;
        }
        for (_, association) in have.iter().filter(|(s, _)| !want.contains(*s)) {
            self.disassociate(association).await?;
        }
        Ok(())
    }

    async fn disassociate(&self, association: &str) -> Result<(), ProviderError> {
        let r = self
            .clients
            .ec2
            .disassociate_route_table()
            .association_id(association)
            .send()
            .await
            .map_err(|e| aws_err("DisassociateRouteTable", e));
        common::gone_is_ok(r)
    }
}

#[async_trait]
impl Describe for RouteTable {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let tables = self.describe_raw(Some(common::ids(reqs)), None).await?;
        Ok(reqs
            .iter()
            .filter_map(|r| {
                let t = tables.iter().find(|t| t.route_table_id() == Some(&r.id))?;
                Some((r.id.clone(), to_attrs(t, &r.prior_inputs)))
            })
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for RouteTable {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let found = self.find_raw(token).await?;
        Ok(found.and_then(|t| t.route_table_id().map(str::to_string)))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let vpc = attrs::s(&req.inputs, "vpc_id")?;
        Target::wanted(&req.inputs)?;
        // A retry of a create that took effect resumes with the table it made.
        let table = match common::earlier(&req, self.find_raw(&req.token)).await? {
            Some(t) => {
                common::sync_tags(
                    &self.clients.ec2,
                    t.route_table_id().unwrap_or_default(),
                    &common::tag_map(t.tags()),
                    &req.inputs,
                )
                .await?;
                t
            }
            None => self
                .clients
                .ec2
                .create_route_table()
                .vpc_id(vpc)
                .client_token(&req.token)
                .tag_specifications(common::tag_spec(
                    Ec2Type::RouteTable,
                    &req.token,
                    &req.inputs,
                ))
                .send()
                .await
                .map_err(|e| aws_err("CreateRouteTable", e))?
                .route_table()
                .cloned()
                .unwrap_or_else(|| Ec2RouteTable::builder().build()),
        };
        let id = table.route_table_id().unwrap_or_default().to_string();
        self.converge(&table, &req.inputs)
            .await
            .map_err(common::settling)?;
        let attributes = common::read_back(self, &req.address, &id, &req.inputs).await?;
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let Some(table) = self.get(&req.id).await? else {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                format!("route table `{}` does not exist", req.id),
            ));
        };
        self.converge(&table, &req.inputs).await?;
        common::sync_tags(
            &self.clients.ec2,
            &req.id,
            &common::tag_map(table.tags()),
            &req.inputs,
        )
        .await?;
        Ok(UpdateResponse {
            attributes: common::read_updated(self, &req.address, &req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let Some(table) = self.get(&req.id).await? else {
            return Ok(DeleteResponse { done: true });
        };
        for association in associations(&table).values() {
            self.disassociate(association).await?;
        }
        let r = self
            .clients
            .ec2
            .delete_route_table()
            .route_table_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteRouteTable", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_route_table";

    async fn igw(c: &AwsClients, vpc: &str) -> String {
        let out = c.ec2.create_internet_gateway().send().await.unwrap();
        let id = out
            .internet_gateway()
            .unwrap()
            .internet_gateway_id()
            .unwrap();
        c.ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .unwrap();
        id.to_string()
    }

    async fn nat(c: &AwsClients, subnet: &str) -> String {
        let eip = c
            .ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .send()
            .await
            .unwrap();
        let out = c
            .ec2
            .create_nat_gateway()
            .subnet_id(subnet)
            .allocation_id(eip.allocation_id().unwrap())
            .send()
            .await
            .unwrap();
        out.nat_gateway()
            .unwrap()
            .nat_gateway_id()
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let (a, b) = (
            t::subnet(&c, &vpc, "10.0.0.0/24").await,
            t::subnet(&c, &vpc, "10.0.1.0/24").await,
        );
        let igw = igw(&c, &vpc).await;
        let nat = nat(&c, &a).await;
        let token = t::token();
        let inp = attrs::attrs([
            ("vpc_id", vpc.as_str().into()),
            ("gateway_id", igw.as_str().into()),
            ("subnet_ids", t::unsorted(&[&a, &b])),
            (
                "tags",
                attrs::tags_value([("Name".into(), "public".into())]),
            ),
        ]);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        let id = created.id;
        let read = rt.read(t::refresh(T, &id, &inp)).await.unwrap();
        let read = read.attributes.unwrap();
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(read, want);
        assert!(matches!(created.completion, Completion::Ready(x) if x == want));
        // Without prior inputs (import) the list comes back sorted.
        let imported = rt.read(t::read(T, &id)).await.unwrap().attributes.unwrap();
        let mut sorted = vec![a.clone(), b.clone()];
        sorted.sort();
        assert_eq!(imported["subnet_ids"], flyteinfra_core::attrs::list(sorted));
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));

        // Switch the default route to the NAT gateway and drop one subnet.
        let mut new = inp.clone();
        new.remove("gateway_id");
        new.insert("nat_gateway_id".into(), nat.as_str().into());
        new.insert(
            "subnet_ids".into(),
            flyteinfra_core::attrs::list(vec![b.clone()]),
        );
        let up = rt
            .update(t::update(
                T,
                &id,
                &read,
                &new,
                &["gateway_id", "nat_gateway_id", "subnet_ids"],
            ))
            .await
            .unwrap()
            .attributes;
        let mut want = new.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(up, want);

        let other = rt
            .create(t::create(
                T,
                &attrs::attrs([("vpc_id", vpc.as_str().into())]),
                &t::token(),
            ))
            .await
            .unwrap();
        let Completion::Ready(o) = other.completion else {
            panic!("route tables are synchronous")
        };
        // No route and no subnets: neither target is invented.
        assert!(!o.contains_key("gateway_id") && !o.contains_key("nat_gateway_id"));
        assert_eq!(o["subnet_ids"], flyteinfra_core::attrs::list(vec![]));

        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let many = rt
            .read_many(vec![t::read(T, &id), t::read(T, &other.id)])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [false, true]);
    }
}
