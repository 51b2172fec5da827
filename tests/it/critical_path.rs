//! The blueprints' critical paths: for each cloud's starter, no database waits for a
//! cluster, node pools wait for the routes their subnets need, and the plan's expected
//! duration is the longest necessary chain, by the schemas' own expected create times.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use flyteinfra_core::{Address, Graph};
use flyteinfra_flyte::{Cloud, Config, Facts, expand, starter};

use crate::util::{TestContext, parse_json};

/// A cloud's starter, expanded, as a graph.
fn starter_graph(cloud: Cloud) -> Graph {
    let config = Config::parse(starter(cloud), Path::new("starter.yaml")).unwrap();
    let blueprint = expand(&config, cloud, &Facts::offline()).unwrap();
    let nodes = blueprint.resources.iter();
    Graph::build(nodes.map(|r| (r.address.clone(), r.dependencies()))).unwrap()
}

fn of_types(g: &Graph, types: &[&str]) -> Vec<Address> {
    let all = g.addresses().into_iter();
    all.filter(|a| types.contains(&a.type_name())).collect()
}

/// Everything `addr` waits for, directly or not.
fn waits_for(g: &Graph, addr: &Address) -> BTreeSet<Address> {
    let mut all = g.with_dependencies(std::slice::from_ref(addr));
    all.remove(addr);
    all
}

const DATABASES: &[&str] = &[
    "aws_db_instance",
    "gcp_sql_database_instance",
    "azure_postgresql_flexible_server",
];
const CLUSTERS: &[&str] = &[
    "aws_eks_cluster",
    "gcp_container_cluster",
    "azure_kubernetes_cluster",
];
const POOLS: &[&str] = &[
    "aws_eks_node_group",
    "gcp_container_node_pool",
    "azure_kubernetes_node_pool",
];
/// Routes that nodes need to reach the API server and registries (AWS: the private
/// subnets' route tables to the NAT gateway; GCP's and Azure's routes exist with the
/// network).
const ROUTES: &[&str] = &["aws_route_table"];

#[test]
fn no_database_waits_for_a_cluster_and_pools_wait_for_their_routes() {
    for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::Azure] {
        let g = starter_graph(cloud);
        let (dbs, clusters) = (of_types(&g, DATABASES), of_types(&g, CLUSTERS));
        assert!(!dbs.is_empty() && !clusters.is_empty(), "{cloud}");
        for db in &dbs {
            let waits = waits_for(&g, db);
            for c in &clusters {
                assert!(!waits.contains(c), "{cloud}: {db} waits for {c}");
            }
        }
        let pools = of_types(&g, POOLS);
        assert!(!pools.is_empty(), "{cloud}");
        let private_routes: Vec<Address> = of_types(&g, ROUTES)
            .into_iter()
            .filter(|a| a.name().starts_with("private"))
            .collect();
        if cloud == Cloud::Aws {
            let private_subnets = of_types(&g, &["aws_subnet"]).into_iter();
            let zones = private_subnets.filter(|a| a.name().starts_with("private"));
            assert_eq!(
                private_routes.len(),
                zones.count(),
                "one per private subnet"
            );
        }
        for pool in &pools {
            let waits = waits_for(&g, pool);
            for route in &private_routes {
                assert!(
                    waits.contains(route),
                    "{cloud}: {pool} does not wait for {route}"
                );
            }
        }
    }
}

/// The plan's `expected_duration` note for `cloud`'s starter: (seconds, chain).
fn planned(cloud: Cloud) -> (u64, Vec<String>) {
    let ctx = TestContext::new(starter(cloud));
    let run = ctx.run(&["plan", "--json"]);
    run.ok();
    let plan = parse_json(&run.stdout);
    let notes = plan["notes"].as_array().unwrap();
    let note = notes
        .iter()
        .find(|n| n["kind"] == "expected_duration")
        .unwrap_or_else(|| panic!("no expected_duration note: {notes:?}"));
    let chain = note["chain"].as_array().unwrap().iter();
    let chain = chain.map(|a| a.as_str().unwrap().to_string()).collect();
    (note["seconds"].as_u64().unwrap(), chain)
}

/// The sum of the schemas' expected create times along `chain`.
fn sum(cloud: Cloud, chain: &[&str]) -> u64 {
    let schemas = flyteinfra::schemas(cloud);
    let time = |a: &&str| {
        let type_name = a.split('.').next().unwrap();
        let schema = schemas.iter().find(|s| s.type_name == type_name).unwrap();
        schema.expected_create
    };
    chain.iter().map(time).sum::<Duration>().as_secs()
}

#[test]
fn the_plan_expects_the_longest_necessary_chain() {
    // AWS: the cluster needs its subnets, the nodes need the cluster; the database
    // (6 min) and the NAT routes (2 min) are made meanwhile. 1085 s ≈ 18 min.
    let aws = [
        "aws_vpc.main",
        "aws_subnet.private_0",
        "aws_eks_cluster.main",
        "aws_eks_node_group.main",
    ];
    // GCP: Cloud SQL needs Private Service Access, which needs its range in the network;
    // every API is enabled first; the user follows the database (Cloud SQL runs one
    // operation per instance at a time). The cluster and its pool (10 min) are made
    // meanwhile. 910 s ≈ 15 min.
    let gcp = [
        "gcp_project_services.main",
        "gcp_compute_network.main",
        "gcp_compute_global_address.psa",
        "gcp_service_networking_connection.main",
        "gcp_sql_database_instance.main",
        "gcp_sql_database.flyte",
        "gcp_sql_user.flyte",
    ];
    // Azure: providers are registered first; the cluster needs its node subnet in the
    // network, and the User pool the cluster. The database (its DNS zone and link, the
    // server: about 7 min) and the identities are made meanwhile.
    let azure = [
        "azure_resource_providers.main",
        "azure_resource_group.main",
        "azure_virtual_network.main",
        "azure_subnet.nodes",
        "azure_kubernetes_cluster.main",
        "azure_kubernetes_node_pool.flyte",
    ];
    for (cloud, chain) in [
        (Cloud::Aws, &aws[..]),
        (Cloud::Gcp, &gcp[..]),
        (Cloud::Azure, &azure[..]),
    ] {
        let (seconds, got) = planned(cloud);
        assert_eq!(got, chain, "{cloud}");
        assert_eq!(seconds, sum(cloud, chain), "{cloud}");
    }
    assert_eq!(sum(Cloud::Aws, &aws), 1085);
    assert_eq!(sum(Cloud::Gcp, &gcp), 910);
    assert_eq!(sum(Cloud::Azure, &azure), 927);
}

#[test]
fn the_text_plan_says_how_long_and_why() {
    let ctx = TestContext::new(starter(Cloud::Aws));
    let run = ctx.run(&["plan"]);
    run.ok();
    assert!(
        run.stdout.contains(
            "expected duration ~18 min: aws_vpc.main → aws_subnet.private_0 → \
             aws_eks_cluster.main → aws_eks_node_group.main"
        ),
        "{}",
        run.stdout
    );
}
