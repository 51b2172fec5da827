//! Config tests: the fixture tables under `tests/fixtures/configs`, defaults,
//! cloud selection, generated hostile input and the JSON Schema.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::blueprint::Facts;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs")
}

/// `*.yaml` files of a fixture directory, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()).expect("directory entry"))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("flyte.yaml"))
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected an error, parsed {c:?}"),
        Err(e) => e,
    }
}

const MINIMAL: &str = "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\n";

#[test]
fn bad_fixtures_fail_at_the_expected_place() {
    let dir = fixtures().join("bad");
    let files = yaml_files(&dir);
    assert!(
        files.len() >= 20,
        "too few bad fixtures in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expect_path = file.with_extension("expect");
        let expect = fs::read_to_string(&expect_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
        let mut lines = expect.lines();
        let position = lines.next().expect("first line: LINE:COLUMN").trim();
        let substring = lines.next().expect("second line: message substring").trim();
        match Config::load(file) {
            Ok(_) => failures.push(format!("{}: parsed, expected an error", file.display())),
            Err(e) => {
                let display = e.to_string();
                let prefix = format!("{}:{position}: ", file.display());
                let at = format!("{}:{}", e.line().unwrap_or(0), e.column().unwrap_or(0));
                if at != position || !display.starts_with(&prefix) {
                    failures.push(format!("{display}\n    expected position {position}"));
                }
                if !e.message().contains(substring) {
                    failures.push(format!(
                        "{display}\n    expected message containing {substring:?}"
                    ));
                }
                if !e.message().contains("expected") {
                    failures.push(format!(
                        "{display}\n    message does not say what was expected"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_bad_fixture_has_an_expectation() {
    for file in yaml_files(&fixtures().join("bad")) {
        assert!(
            file.with_extension("expect").is_file(),
            "{} has no .expect",
            file.display()
        );
    }
}

#[test]
fn good_fixtures_parse_and_validate() {
    let files = yaml_files(&fixtures().join("good"));
    assert!(files.len() >= 5);
    for file in files {
        let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
        config.validate().unwrap_or_else(|e| panic!("{e}"));
        let cloud = config.select_cloud(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cloud, config.cloud);
        assert_eq!(config.path(), file.as_path());
    }
}

#[test]
fn starters_parse_and_validate() {
    for cloud in Cloud::ALL.into_iter().chain([Cloud::Sandbox]) {
        let text = starter(cloud);
        let path = PathBuf::from(format!("starters/{cloud}.yaml"));
        let config = Config::parse(text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.cloud, cloud);
        assert_eq!(config.select_cloud(None).unwrap(), cloud);
        // Each starter explains its knobs.
        assert!(
            text.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count()
                >= 10
        );
        // The starters spell out the defaults, so they equal a minimal config
        // (apart from the cloud section's example values).
        assert_eq!(config.database, DatabaseConfig::default());
        assert_eq!(config.storage, StorageConfig::default());
        assert_eq!(config.cluster, ClusterConfig::default());
        assert_eq!(config.flyte, FlyteConfig::default());
        assert_eq!(
            config.state,
            StateConfig::from(StateBackend::Local(LocalState::default()))
        );
    }
}

#[test]
fn multi_cloud_fixture_has_all_sections() {
    let config = Config::load(&fixtures().join("good/multi-cloud.yaml")).unwrap();
    for cloud in Cloud::ALL {
        assert!(config.has_section(cloud), "{cloud}");
        assert_eq!(config.select_cloud(Some(cloud)).unwrap(), cloud);
    }
}

#[test]
fn defaults() {
    let config = parse(MINIMAL).unwrap();
    let mut built = Config::new("flyte-demo", Cloud::Aws);
    built.aws = Some(AwsConfig::new("us-east-1"));
    assert_eq!(config, built);
    built.validate().unwrap();

    assert_eq!(config.style, Style::SingleCluster);
    let aws = config.aws.as_ref().unwrap();
    assert_eq!(aws.zones(), ["us-east-1a", "us-east-1b"]);
    assert_eq!(aws.vpc_cidr.to_string(), "10.0.0.0/16");
    assert_eq!(aws.nat_gateways, NatGateways::Single);
    assert_eq!(aws.node_instance_type, "m7i.xlarge");
    assert_eq!(aws.db_instance_class, "db.t3.medium");
    assert_eq!(aws.existing, AwsExisting::default());
    assert!(config.gcp.is_none() && config.azure.is_none());

    let db = &config.database;
    assert_eq!(
        (
            db.engine_version.as_str(),
            db.name.as_str(),
            db.username.as_str()
        ),
        ("16", "flyte", "flyte")
    );
    assert_eq!((db.storage_gb, db.backup_retention_days), (32, 7));
    assert!(db.deletion_protection && db.require_ssl);

    let s = &config.storage;
    assert!(s.separate_data_bucket);
    assert_eq!((&s.metadata_bucket, &s.data_bucket), (&None, &None));
    assert_eq!(s.raw_data_expiry_days, None);

    assert_eq!(config.cluster.version, "1.33");
    let n = config.cluster.nodes;
    assert_eq!((n.min, n.max, n.desired, n.desired()), (2, 5, None, 2));

    let f = &config.flyte;
    assert_eq!(f.chart, Chart::FlyteBinary);
    assert_eq!(
        (f.chart_version.as_str(), f.image_tag.as_str()),
        ("v1.16.8", "v1.16.8")
    );
    assert_eq!(
        (
            f.namespace.as_str(),
            f.release.as_str(),
            f.service_account.as_str()
        ),
        ("flyte", "flyte-backend", "flyte-backend")
    );
    assert_eq!(f.projects, ["flytesnacks"]);
    assert_eq!(f.domains, ["development", "staging", "production"]);
    assert_eq!(f.task_trust, TaskTrust::Enumerated);
    assert_eq!(
        f.task_namespaces(),
        [
            "flytesnacks-development",
            "flytesnacks-staging",
            "flytesnacks-production"
        ]
    );

    assert_eq!(
        config.state.backend(),
        StateBackend::Local(LocalState::default())
    );

    let gcp = GcpConfig::new("my-project", "us-central1");
    assert!(gcp.enable_apis);
    assert_eq!(
        [gcp.subnet_cidr, gcp.pods_cidr, gcp.services_cidr].map(|c| c.to_string()),
        ["10.10.0.0/20", "10.16.0.0/14", "10.20.0.0/20"]
    );
    assert_eq!(
        (gcp.machine_type.as_str(), gcp.db_tier.as_str()),
        ("e2-standard-4", "db-custom-1-3840")
    );
    let azure = AzureConfig::new("00000000-0000-0000-0000-000000000000", "eastus", "rg");
    assert_eq!(
        (azure.vm_size.as_str(), azure.db_sku.as_str()),
        ("Standard_D4s_v5", "GP_Standard_D2s_v3")
    );
    assert_eq!(
        [
            azure.vnet_cidr,
            azure.node_subnet_cidr,
            azure.db_subnet_cidr
        ]
        .map(|c| c.to_string()),
        ["10.30.0.0/16", "10.30.0.0/20", "10.30.16.0/24"]
    );
}

#[test]
fn built_in_cidrs_are_valid() {
    let aws = AwsConfig::new("us-east-1");
    let gcp = GcpConfig::new("my-project", "us-central1");
    let azure = AzureConfig::new("00000000-0000-0000-0000-000000000000", "eastus", "rg");
    for cidr in [
        aws.vpc_cidr,
        gcp.subnet_cidr,
        gcp.pods_cidr,
        gcp.services_cidr,
        azure.vnet_cidr,
        azure.node_subnet_cidr,
        azure.db_subnet_cidr,
    ] {
        assert_eq!(cidr.to_string().parse::<Ipv4Cidr>(), Ok(cidr));
    }
}

#[test]
fn every_cloud_section_validates_with_defaults() {
    let mut config = Config::new("flyte-demo", Cloud::Gcp);
    config.gcp = Some(GcpConfig::new("my-project", "us-central1"));
    config.validate().unwrap();
    let mut config = Config::new("flyte-demo", Cloud::Azure);
    config.azure = Some(AzureConfig::new(
        "00000000-0000-0000-0000-000000000000",
        "eastus",
        "flyte-demo-rg",
    ));
    config.validate().unwrap();
}

#[test]
fn select_cloud_override_wins() {
    let all = Config::load(&fixtures().join("good/multi-cloud.yaml")).unwrap();
    assert_eq!(all.cloud, Cloud::Gcp);
    assert_eq!(all.select_cloud(None).unwrap(), Cloud::Gcp);
    assert_eq!(all.select_cloud(Some(Cloud::Aws)).unwrap(), Cloud::Aws);
    assert_eq!(all.select_cloud(Some(Cloud::Azure)).unwrap(), Cloud::Azure);
}

#[test]
fn select_cloud_override_without_section_fails_at_start() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.select_cloud(Some(Cloud::Aws)).unwrap(), Cloud::Aws);
    let e = config.select_cloud(Some(Cloud::Gcp)).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::MissingCloudSection);
    assert_eq!((e.line(), e.column()), (Some(1), Some(1)));
    assert_eq!(
        e.to_string(),
        "flyte.yaml:1:1: `--cloud gcp` selects gcp but the file has no `gcp` section, expected a `gcp:` mapping"
    );
}

#[test]
fn select_cloud_without_override_points_at_cloud_key() {
    // A config built in code can lack the section `cloud:` names.
    let mut config = parse(MINIMAL).unwrap();
    config.cloud = Cloud::Azure;
    let e = config.select_cloud(None).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::MissingCloudSection);
    assert_eq!((e.line(), e.column()), (Some(2), Some(8)));
    assert!(e.message().contains("no `azure` section"), "{e}");
    // An override naming `cloud:` itself behaves the same.
    let e = config.select_cloud(Some(Cloud::Azure)).unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(2), Some(8)));
}

#[test]
fn cloud_names_round_trip() {
    for cloud in Cloud::ALL {
        assert_eq!(cloud.to_string().parse::<Cloud>(), Ok(cloud));
    }
    assert_eq!("sandbox".parse::<Cloud>(), Ok(Cloud::Sandbox));
    assert_eq!(Cloud::Sandbox.to_string(), "sandbox");
    let e = "oracle".parse::<Cloud>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown cloud `oracle`, expected one of `aws`, `gcp`, `azure`, `sandbox`"
    );
}

#[test]
fn errors_display_file_line_column() {
    let e = parse_err(
        "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\n  nat_gateways: many\n",
    );
    assert_eq!(e.path(), Path::new("flyte.yaml"));
    assert_eq!(e.position(), Some(Position::new(5, 17)));
    assert_eq!(
        e.to_string(),
        "flyte.yaml:5:17: unknown value `many` for `aws.nat_gateways`, expected one of `single`, `per_az`"
    );
}

#[test]
fn code_built_config_errors_point_at_start() {
    let mut config = Config::new("x", Cloud::Aws);
    config.aws = Some(AwsConfig::new("us-east-1"));
    let e = config.validate().unwrap_err();
    assert_eq!(e.to_string().split(": ").next(), Some("<config>:1:1"));
    assert_eq!(e.kind(), ConfigErrorKind::Invalid);
}

#[test]
fn missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Read);
    assert_eq!((e.line(), e.column()), (None, None));
    assert_eq!(
        e.to_string(),
        format!("{}: cannot read the config file", path.display())
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn binary_file_written_by_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.yaml");
    let mut bytes = b"name: flyte-demo\n".to_vec();
    bytes.extend((0u8..=255).rev());
    fs::write(&path, &bytes).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Encoding);
    // 0xFF at line 2, column 1 is the first invalid byte.
    assert_eq!(e.position(), Some(Position::new(2, 1)));
    assert!(e.message().contains("invalid UTF-8 (byte 0xFF)"), "{e}");
}

#[test]
fn control_characters_are_located() {
    let e = parse_err("name: flyte-demo\ncloud: aws\x07\n");
    assert_eq!(e.position(), Some(Position::new(2, 11)));
    assert!(e.message().contains("U+0007"), "{e}");
    let e = parse_err("name: flyte\0demo\n");
    assert_eq!(e.position(), Some(Position::new(1, 12)));
    assert!(e.message().contains("NUL"), "{e}");
}

#[test]
fn deep_flow_nesting_is_a_located_error() {
    for text in [
        "[".repeat(100_000),
        format!(
            "name: flyte-demo\ncloud: aws\nflyte:\n  projects: {}",
            "[".repeat(100_000)
        ),
        format!(
            "name: flyte-demo\ncloud: aws\nflyte: {}",
            "{a: ".repeat(100_000)
        ),
    ] {
        let e = parse_err(&text);
        assert!(e.line().is_some(), "{e}");
        assert!(e.message().contains("expected"), "{e}");
    }
    let e = parse_err(&"[".repeat(100_000));
    assert_eq!(e.kind(), ConfigErrorKind::Limit);
    assert_eq!(e.line(), Some(1));
    assert!(e.message().contains("nesting is deeper than"), "{e}");
}

#[test]
fn deep_block_nesting_is_a_located_error() {
    let seq = format!(
        "name: flyte-demo\ncloud: aws\nflyte:\n  projects:\n    {}a\n",
        "- ".repeat(100_000)
    );
    let e = parse_err(&seq);
    assert_eq!(e.line(), Some(5), "{e}");
    let mut map = String::from("name: flyte-demo\ncloud: aws\nflyte:\n");
    for depth in 1..200 {
        map.push_str(&" ".repeat(depth * 2));
        map.push_str("k:\n");
    }
    let e = parse_err(&map);
    assert_eq!(e.position(), Some(Position::new(4, 3)), "{e}");
}

#[test]
fn huge_input_is_a_located_error() {
    let mut text = String::from("name: flyte-demo\ncloud: aws\n");
    while text.len() <= source::MAX_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let e = parse_err(&text);
    assert_eq!(e.kind(), ConfigErrorKind::Limit);
    assert!(e.line().unwrap() > 1000, "{e}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    fs::write(&path, &text).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Limit);
    assert!(e.line().unwrap() > 1000, "{e}");

    // Many nodes within the size limit hit the node budget.
    let text = format!(
        "name: flyte-demo\ncloud: aws\nflyte:\n  projects: [{}]\n",
        vec!["a"; 200_000].join(",")
    );
    let e = parse_err(&text);
    assert_eq!(e.kind(), ConfigErrorKind::Limit);
    assert_eq!(e.line(), Some(4));
}

#[test]
fn rules_are_located_at_the_offending_value() {
    let cases: &[(&str, (u32, u32), &str)] = &[
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\n  availability_zones: [us-east-1a, us-west-2b]\n",
            (5, 36),
            "a zone of `us-east-1`",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\n  existing:\n    cluster_name: eks\n",
            (6, 19),
            "without `aws.existing.vpc_id`",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\n  vpc_cidr: 8.0.0.0/16\n",
            (5, 13),
            "expected a private range",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\n  vpc_cidr: 10.0.0.0/24\n",
            (5, 13),
            "expected a prefix from /16 to /20",
        ),
        (
            "name: flyte-demo\ncloud: gcp\ngcp:\n  project: my-project\n  region: us-central1-a\n",
            (5, 11),
            "a region, not a zone",
        ),
        (
            "name: flyte-demo\ncloud: gcp\ngcp:\n  project: my-project\n  region: us-central1\n  release_channel: beta\n",
            (6, 20),
            "`RAPID`, `REGULAR` or `STABLE`",
        ),
        (
            "name: flyte-demo\ncloud: azure\nazure:\n  subscription_id: nope\n  location: eastus\n  resource_group: rg\n",
            (4, 20),
            "a subscription GUID",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  chart_version: v0.2.0\n",
            (6, 18),
            "a Flyte 1 chart version",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  image_tag: latest\n",
            (6, 14),
            "not `latest`",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\ndatabase:\n  username: postgres\n",
            (6, 13),
            "a name some clouds reserve",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  namespace: flyte-staging\n  projects: [flyte]\n",
            (7, 14),
            "collides with the namespace",
        ),
        (
            "name: flyte-demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  domains: []\n",
            (6, 12),
            "`flyte.domains` is empty",
        ),
        (
            // 21 projects: each domain's task identity would need 21 federated credentials.
            "name: flyte-demo\ncloud: azure\nazure:\n  subscription_id: 00000000-0000-0000-0000-000000000000\n  location: eastus\n  resource_group: rg\nflyte:\n  projects: [p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, p16, p17, p18, p19, p20]\n  domains: [development]\n",
            (8, 13),
            "21 federated credentials",
        ),
    ];
    for (text, (line, column), substring) in cases {
        let e = parse_err(text);
        assert_eq!(e.position(), Some(Position::new(*line, *column)), "{e}");
        assert!(
            e.message().contains(substring),
            "{e}\n  wanted {substring:?}"
        );
    }
}

#[test]
fn state_dir_is_relative_to_the_config_file() {
    let config = Config::parse(MINIMAL, Path::new("deploy/prod/flyte.yaml")).unwrap();
    assert_eq!(
        config.state_dir().as_deref(),
        Some(Path::new("deploy/prod/.flyteinfra"))
    );
    let config = Config::parse(MINIMAL, Path::new("flyte.yaml")).unwrap();
    assert_eq!(
        config.state_dir().as_deref(),
        Some(Path::new(".flyteinfra"))
    );
    let mut built = Config::new("flyte-demo", Cloud::Aws);
    built.state = StateConfig::from(StateBackend::Local(LocalState {
        path: PathBuf::from("state"),
        ..LocalState::default()
    }));
    assert_eq!(built.state_dir().as_deref(), Some(Path::new("state")));
    // State in S3 has no directory.
    let s3 = parse(&format!(
        "{MINIMAL}state:\n  s3: {{bucket: acme-flyteinfra-state, region: us-east-1}}\n"
    ))
    .unwrap();
    assert_eq!(s3.state_dir(), None);
}

#[test]
fn position_of_points_at_values() {
    let config = Config::load(&fixtures().join("good/aws-existing.yaml")).unwrap();
    assert_eq!(
        config.position_of("aws.existing.cluster_name"),
        Position::new(13, 19)
    );
    assert_eq!(
        config.position_of("flyte.projects[1]"),
        Position::new(23, 27)
    );
    // Absent keys fall back to the enclosing section.
    assert_eq!(config.position_of("gcp.region"), config.position_of(""));
    assert_eq!(config.position_of(""), Position::new(3, 1));
    assert_eq!(
        config.position_of("database.name"),
        config.position_of("database")
    );
}

#[test]
fn configs_round_trip_through_json() {
    for file in yaml_files(&fixtures().join("good")) {
        let config = Config::load(&file).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        // JSON is YAML, so the serialized form is itself a valid config file.
        let again = parse(&json).unwrap_or_else(|e| panic!("{}: {e}\n{json}", file.display()));
        assert_eq!(again, config, "{}", file.display());
    }
}

#[test]
fn json_schema_describes_the_file() {
    let text = json_schema();
    let schema: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(text.contains('\n'), "pretty-printed");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    let properties = schema["properties"].as_object().expect("root properties");
    for key in [
        "name", "cloud", "style", "aws", "gcp", "azure", "sandbox", "database", "storage",
        "cluster", "flyte", "state",
    ] {
        let property = properties
            .get(key)
            .unwrap_or_else(|| panic!("schema lacks `{key}`"));
        let description = property["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "`{key}` has no description");
    }
    assert!(!properties.contains_key("origin"));
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    // `cloud` may be left out with `style: sandbox`, so only `name` is required always.
    assert_eq!(required, ["name"]);
    // Nested sections deny unknown keys too.
    let defs = schema["$defs"].as_object().expect("$defs");
    for name in [
        "AwsConfig",
        "GcpConfig",
        "AzureConfig",
        "DatabaseConfig",
        "FlyteConfig",
        "LocalState",
        "S3State",
        "SandboxConfig",
        "SandboxPostgres",
        "ObjectStore",
        "Capabilities",
    ] {
        assert_eq!(defs[name]["additionalProperties"], false, "{name}");
    }
    assert_eq!(
        defs["SandboxPostgres"]["required"],
        serde_json::json!(["host", "admin_password_env"])
    );
    assert_eq!(
        defs["ObjectStore"]["required"],
        serde_json::json!(["endpoint", "access_key_env", "secret_key_env"])
    );
    assert_eq!(
        defs["SandboxConfig"]["required"],
        serde_json::json!(["postgres", "object_store"])
    );
    // `state.s3` needs its bucket and region; lease TTLs are duration strings.
    assert_eq!(
        defs["S3State"]["required"],
        serde_json::json!(["bucket", "region"])
    );
    assert_eq!(defs["LeaseTtl"]["type"], "string");
    assert_eq!(defs["LeaseTtl"]["pattern"], "^[0-9]+(ms|s|m|h)$");
    assert_eq!(defs["S3State"]["properties"]["lease_ttl"]["default"], "30s");
}

#[test]
fn null_and_case_mistakes_are_explained() {
    let e = parse_err("name:\ncloud: aws\naws:\n  region: us-east-1\n");
    assert!(
        e.message()
            .contains("`name` is empty (null), expected a string"),
        "{e}"
    );
    let e = parse_err("name: flyte-demo\ncloud: AWS\n");
    assert_eq!(e.position(), Some(Position::new(2, 8)));
    assert!(
        e.message().contains("unknown value `AWS` for `cloud`"),
        "{e}"
    );
    // An empty section is no section.
    let e = parse_err("name: flyte-demo\ncloud: aws\naws:\n");
    assert_eq!(e.kind(), ConfigErrorKind::MissingCloudSection);
    assert_eq!(e.position(), Some(Position::new(2, 8)));
}

#[test]
fn anchors_and_crlf_are_accepted() {
    let text = "name: flyte-demo\r\ncloud: aws\r\naws:\r\n  region: &r us-east-1\r\n  availability_zones: [us-east-1a, us-east-1b]\r\nflyte:\r\n  projects: [one, two]\r\n";
    let config = parse(text).unwrap();
    assert_eq!(config.aws.unwrap().region, "us-east-1");
    let e = parse_err(
        "name: flyte-demo\r\ncloud: aws\r\naws:\r\n  region: us-east-1\r\ncluster:\r\n  nodes: {min: 9}\r\n",
    );
    assert_eq!(e.position(), Some(Position::new(6, 16)), "{e}");
}

#[test]
fn multi_cluster_implies_flyte_core_and_fills_plane_defaults() {
    let c = Config::parse(
        "name: demo\ncloud: gcp\nstyle: multi-cluster\ngcp:\n  project: p-1234\n  region: us-central1\n\
         cluster:\n  nodes: {min: 1, max: 4}\n\
         control_plane:\n  admin_endpoint: flyteadmin.flyte.internal:81\n  catalog_endpoint: datacatalog.flyte.internal:89\n\
         data_planes:\n  - name: east\n    label: gpu\n    weight: 0.25\n  - name: west\n    label: gpu\n    weight: 0.75\n\
         \x20 - name: cpu\n    nodes: {min: 0, max: 9}\n    gcp: {machine_type: n2-standard-8}\n",
        Path::new("mc.yaml"),
    )
    .unwrap();
    assert_eq!(c.flyte.chart, Chart::FlyteCore);
    assert!(c.control_plane.as_ref().unwrap().insecure);
    let [east, west, cpu] = &c.data_planes[..] else {
        panic!("three planes")
    };
    assert_eq!((east.label(), east.weight()), ("gpu", 0.25));
    assert_eq!((west.label(), west.weight()), ("gpu", 0.75));
    assert_eq!((cpu.label(), cpu.weight()), ("cpu", 1.0));
    assert_eq!(east.nodes(&c.cluster).max, 4);
    assert_eq!(cpu.nodes(&c.cluster).max, 9);
    assert_eq!(cpu.cluster_name(&c.name), "demo-cpu");
    assert_eq!(cpu.address_name(), "dp_cpu");
    // Default ranges are picked by name: stable, private, and apart from each other and
    // from the control plane's.
    let ranges: Vec<Ipv4Cidr> = c
        .data_planes
        .iter()
        .flat_map(|p| [p.gcp_pods_cidr(), p.gcp_services_cidr()])
        .collect();
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[..i] {
            assert!(!a.overlaps(b), "{a} overlaps {b}");
        }
    }
    assert_eq!(east.gcp_pods_cidr(), c.data_planes[0].gcp_pods_cidr());
}

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let files = yaml_files(&dir);
    assert!(files.len() >= 4, "too few examples in {}", dir.display());
    for file in files {
        if let Err(e) = Config::load(&file) {
            panic!("{e}");
        }
    }
}

const S3_STATE: &str = "state:\n  s3:\n    bucket: acme-flyteinfra-state\n    key_prefix: flyte/prod\n    region: us-east-1\n";

#[test]
fn state_sections_and_lease_ttls() {
    // No `state:` section: a local `.flyteinfra` with a 30s lease.
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.state, StateConfig::default());
    let StateBackend::Local(local) = config.state.backend() else {
        panic!("local state by default")
    };
    assert_eq!(local.path, Path::new(".flyteinfra"));
    assert_eq!(local.lease_ttl(), Duration::from_secs(30));
    assert_eq!(config.state.lease_ttl(), Duration::from_secs(30));

    let config = parse(&format!(
        "{MINIMAL}state:\n  local: {{path: x, lease_ttl: 45s}}\n"
    ))
    .unwrap();
    let StateBackend::Local(local) = config.state.backend() else {
        panic!("local state")
    };
    assert_eq!(local.path, Path::new("x"));
    assert_eq!(local.lease_ttl(), Duration::from_secs(45));
    assert_eq!(config.state.lease_ttl(), Duration::from_secs(45));

    // `state.s3` with the defaults: no key prefix, a 30s lease.
    let config = parse(&format!("{MINIMAL}{S3_STATE}")).unwrap();
    let expected = S3State {
        bucket: "acme-flyteinfra-state".to_owned(),
        key_prefix: "flyte/prod".to_owned(),
        region: "us-east-1".to_owned(),
        lease_ttl: LeaseTtl::DEFAULT,
    };
    assert_eq!(
        config.state,
        StateConfig::from(StateBackend::S3(expected.clone()))
    );
    assert_eq!(config.state.lease_ttl(), Duration::from_secs(30));
    let config = parse(&format!(
        "{MINIMAL}state:\n  s3: {{bucket: b-1, region: eu-west-3, lease_ttl: 1500ms}}\n"
    ))
    .unwrap_err();
    // 1500ms is below the 2s floor.
    assert!(config.message().contains("at least 2s"), "{config}");
    let config = parse(&format!(
        "{MINIMAL}state:\n  s3: {{bucket: b-1, region: eu-west-3, lease_ttl: 2m}}\n"
    ))
    .unwrap();
    let StateBackend::S3(s3) = config.state.backend() else {
        panic!("s3 state")
    };
    assert_eq!(s3.key_prefix, "");
    assert_eq!(s3.region, "eu-west-3");
    assert_eq!(s3.lease_ttl(), Duration::from_secs(120));
    assert_eq!(config.state.lease_ttl(), Duration::from_secs(120));
    // The bounds are accepted.
    for ttl in ["2s", "2000ms", "1h", "60m", "3600s"] {
        parse(&format!(
            "{MINIMAL}state:\n  s3: {{bucket: b-1, region: eu-west-3, lease_ttl: {ttl}}}\n"
        ))
        .unwrap_or_else(|e| panic!("{ttl}: {e}"));
    }
}

#[test]
fn lease_ttl_text() {
    for (text, duration, shown) in [
        ("30s", Duration::from_secs(30), "30s"),
        ("2m", Duration::from_secs(120), "2m"),
        ("120s", Duration::from_secs(120), "2m"),
        ("1500ms", Duration::from_millis(1500), "1500ms"),
        ("1h", Duration::from_secs(3600), "1h"),
        ("0s", Duration::ZERO, "0s"),
    ] {
        let ttl: LeaseTtl = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ttl.as_duration(), duration, "{text}");
        assert_eq!(ttl.to_string(), shown, "{text}");
        assert_eq!(shown.parse::<LeaseTtl>().unwrap(), ttl);
    }
    for bad in [
        "",
        "30",
        "s",
        "1.5s",
        "30 s",
        " 30s",
        "-1s",
        "+1s",
        "30S",
        "30sec",
        "1d",
        "99999999999999999999h",
        "18446744073709551615h",
    ] {
        let e = bad.parse::<LeaseTtl>().unwrap_err().to_string();
        assert!(e.contains("expected a whole number"), "{bad}: {e}");
    }
    assert!(
        "30".parse::<LeaseTtl>()
            .unwrap_err()
            .to_string()
            .contains("has no unit")
    );
    // A YAML number is not a duration either.
    let e = parse_err(&format!("{MINIMAL}state:\n  local:\n    lease_ttl: 30\n"));
    assert_eq!(e.position(), Some(Position::new(7, 16)), "{e}");
    assert!(e.message().contains("`30` has no unit"), "{e}");
}

#[test]
fn state_s3_rules() {
    let s3 = |fields: &str| format!("{MINIMAL}state:\n  s3: {{{fields}}}\n");
    let ok = "region: us-east-1";
    let long_prefix = "p".repeat(901);
    let cases: Vec<(String, &str)> = vec![
        (
            s3(&format!("bucket: ab, {ok}")),
            "which is 2 characters long",
        ),
        (
            s3(&format!("bucket: {}, {ok}", "a".repeat(64))),
            "which is 64 characters long",
        ),
        (s3(&format!("bucket: my_bucket, {ok}")), "which has `_`"),
        (s3(&format!("bucket: -abc, {ok}")), "which starts with `-`"),
        (s3(&format!("bucket: abc., {ok}")), "which ends with `.`"),
        (s3(&format!("bucket: a..b, {ok}")), "two adjacent dots"),
        (
            s3(&format!("bucket: 192.168.5.4, {ok}")),
            "shaped like an IP address",
        ),
        (
            s3(&format!("bucket: xn--abc, {ok}")),
            "a prefix S3 reserves",
        ),
        (
            s3(&format!("bucket: abc-s3alias, {ok}")),
            "a suffix S3 reserves",
        ),
        (
            s3(&format!("bucket: b-1, key_prefix: flyte/, {ok}")),
            "which ends with `/`",
        ),
        (
            s3(&format!("bucket: b-1, key_prefix: a//b, {ok}")),
            "which has an empty segment (`//`)",
        ),
        (
            s3(&format!("bucket: b-1, key_prefix: {long_prefix}, {ok}")),
            "is 901 bytes long, expected",
        ),
        (
            s3("bucket: b-1, region: us-east"),
            "`state.s3.region` is `us-east`, expected the AWS region of the bucket",
        ),
        (
            s3(&format!("bucket: b-1, {ok}, lease_ttl: 0s")),
            "is `0s`, expected 2s to 1h",
        ),
        (
            s3(&format!("bucket: b-1, {ok}, lease_ttl: 61m")),
            "is `61m`, expected 2s to 1h: a run that stalls holding the lease blocks every other run for this long, so at most 1h",
        ),
        (
            format!("{MINIMAL}state:\n  local: {{lease_ttl: 1s}}\n"),
            "`state.local.lease_ttl` is `1s`, expected 2s to 1h",
        ),
        (
            format!("{MINIMAL}state:\n  s3: {{region: us-east-1}}\n"),
            "missing required key `bucket` in `state.s3`",
        ),
    ];
    for (text, substring) in &cases {
        let e = parse_err(text);
        assert!(
            e.message().contains(substring),
            "{e}\n  wanted {substring:?}"
        );
        assert_eq!(e.position().map(|p| p.line), Some(6), "{e}");
    }
    // Names S3 accepts.
    for bucket in ["abc", "a.b-c.1", "1-2-3", &"a".repeat(63)] {
        parse(&s3(&format!("bucket: {bucket}, {ok}"))).unwrap_or_else(|e| panic!("{bucket}: {e}"));
    }
}

#[test]
fn state_gcs_azurerm_and_encryption() {
    let state = |body: &str| format!("{MINIMAL}state:\n{body}");
    let config = parse(&state(
        "  gcs: {bucket: acme-state, prefix: team/prod}\n  encryption: {passphrase_env: STATE_PW}\n",
    ))
    .unwrap();
    assert_eq!(
        config.state.backend(),
        StateBackend::Gcs(GcsState {
            bucket: "acme-state".to_owned(),
            prefix: "team/prod".to_owned(),
            lease_ttl: LeaseTtl::DEFAULT,
        })
    );
    assert_eq!(
        config.state.encryption,
        Some(EncryptionConfig {
            passphrase_env: Some("STATE_PW".to_owned()),
            aws_kms: None,
        })
    );
    let config = parse(&state(
        "  azurerm: {account: acmestate, container: tfstate, lease_ttl: 45s}\n  encryption:\n    aws_kms: {key_id: alias/flyteinfra-state}\n",
    ))
    .unwrap();
    let StateBackend::Azurerm(az) = config.state.backend() else {
        panic!("azurerm state")
    };
    assert_eq!(
        (az.account.as_str(), az.key_prefix.as_str()),
        ("acmestate", "")
    );
    assert_eq!(config.state.lease_ttl(), Duration::from_secs(45));
    let kms = config.state.encryption.unwrap().aws_kms.unwrap();
    assert_eq!(
        (kms.key_id.as_str(), kms.region.as_str()),
        ("alias/flyteinfra-state", "")
    );
    // Encryption alone keeps the local default.
    let config = parse(&state("  encryption: {passphrase_env: STATE_PW}\n")).unwrap();
    assert_eq!(
        config.state.backend(),
        StateBackend::Local(LocalState::default())
    );

    let cases: Vec<(String, &str, u32)> = vec![
        (
            state("  s3: {bucket: b-1, region: us-east-1}\n  postgres: {conn_env: PG}\n"),
            "`state` names both `s3` and `postgres`, expected one backend",
            7,
        ),
        (
            state("  gcs: {bucket: Bad_Bucket}\n"),
            "`state.gcs.bucket` is `Bad_Bucket`, expected a GCS bucket name",
            6,
        ),
        (
            state("  gcs: {bucket: google-state}\n"),
            "expected a GCS bucket name",
            6,
        ),
        (
            state("  gcs: {bucket: ok-bucket, prefix: /x}\n"),
            "`state.gcs.prefix` is `/x`, which starts with `/`",
            6,
        ),
        (
            state("  gcs: {bucket: ok-bucket, lease_ttl: 2h}\n"),
            "`state.gcs.lease_ttl` is `2h`, expected 2s to 1h",
            6,
        ),
        (
            state("  azurerm: {account: Acme, container: tfstate}\n"),
            "`state.azurerm.account` is `Acme`, expected a storage account name",
            6,
        ),
        (
            state("  azurerm: {account: acme, container: a--b}\n"),
            "`state.azurerm.container` is `a--b`, expected a blob container name",
            6,
        ),
        (
            state("  azurerm: {account: acme, container: tfstate, key_prefix: a//b}\n"),
            "`state.azurerm.key_prefix` is `a//b`, which has an empty segment",
            6,
        ),
        (
            state("  azurerm: {account: acme}\n"),
            "missing required key `container` in `state.azurerm`",
            6,
        ),
        (
            state("  encryption: {}\n"),
            "`state.encryption` sets no key source",
            6,
        ),
        (
            state("  encryption: {passphrase_env: P, aws_kms: {key_id: k}}\n"),
            "sets both `passphrase_env` and `aws_kms`",
            6,
        ),
        (
            state("  encryption: {passphrase_env: correct horse battery}\n"),
            "`state.encryption.passphrase_env` is not an environment variable name",
            6,
        ),
        (
            state("  encryption: {aws_kms: {key_id: ''}}\n"),
            "`state.encryption.aws_kms.key_id` is empty",
            6,
        ),
        (
            state("  encryption: {aws_kms: {key_id: k, region: nowhere}}\n"),
            "`state.encryption.aws_kms.region` is `nowhere`",
            6,
        ),
        (state("  encryption: {aws_kms: {id: k}}\n"), "unknown", 6),
    ];
    for (text, substring, line) in &cases {
        let e = parse_err(text);
        assert!(
            e.message().contains(substring),
            "{e}\n  wanted {substring:?}"
        );
        assert_eq!(e.position().map(|p| p.line), Some(*line), "{e}");
        assert!(
            !e.to_string().contains("horse"),
            "a passphrase is never echoed: {e}"
        );
    }
}

#[test]
fn state_postgres_tls_and_ca_file() {
    let state = |body: &str| format!("{MINIMAL}state:\n{body}");
    // TLS by default, the certificate not verified.
    let config = parse(&state("  postgres: {conn_env: STATE_PG}\n")).unwrap();
    let StateBackend::Postgres(pg) = config.state.backend() else {
        panic!("postgres state")
    };
    assert_eq!(
        (
            pg.conn_env.as_str(),
            pg.schema.as_str(),
            pg.tls,
            &pg.ca_file
        ),
        ("STATE_PG", "flyteinfra", PgTls::Require, &None)
    );
    assert_eq!(config.state_postgres_ca_file(), None);
    let config = parse(&state("  postgres: {conn_env: STATE_PG, tls: disable}\n")).unwrap();
    assert_eq!(config.state.postgres.unwrap().tls, PgTls::Disable);
    // `ca_file` is relative to the config file, as `sandbox.postgres.ca_file` is.
    let config = Config::parse(
        &state("  postgres: {conn_env: STATE_PG, tls: verify-full, ca_file: certs/ca.pem}\n"),
        Path::new("deploy/prod/flyte.yaml"),
    )
    .unwrap();
    assert_eq!(
        config.state.postgres.as_ref().unwrap().tls,
        PgTls::VerifyFull
    );
    assert_eq!(
        config.state_postgres_ca_file().as_deref(),
        Some(Path::new("deploy/prod/certs/ca.pem"))
    );
    let absolute = parse(&state(
        "  postgres: {conn_env: STATE_PG, tls: verify-full, ca_file: /etc/pg/ca.pem}\n",
    ))
    .unwrap();
    assert_eq!(
        absolute.state_postgres_ca_file().as_deref(),
        Some(Path::new("/etc/pg/ca.pem"))
    );

    let cases = [
        (
            state("  postgres: {conn_env: STATE_PG, ca_file: ca.pem}\n"),
            "`state.postgres.ca_file` is set but `state.postgres.tls` is `require`, which verifies no certificate",
        ),
        (
            state("  postgres: {conn_env: STATE_PG, tls: disable, ca_file: ca.pem}\n"),
            "`state.postgres.ca_file` is set but `state.postgres.tls` is `disable`",
        ),
        (
            state("  postgres: {conn_env: STATE_PG, tls: verify-full, ca_file: ''}\n"),
            "`state.postgres.ca_file` is empty",
        ),
        (
            state("  postgres: {conn_env: STATE_PG, tls: verify-ca}\n"),
            "verify-ca",
        ),
    ];
    for (text, substring) in &cases {
        let e = parse_err(text);
        assert!(
            e.message().contains(substring),
            "{e}\n  wanted {substring:?}"
        );
        assert_eq!(e.position().map(|p| p.line), Some(6), "{e}");
    }
}

/// The bucket the blueprint gives Flyte's `purpose` storage on `cloud`.
fn blueprint_bucket(config: &Config, cloud: Cloud, purpose: &str, facts: &Facts) -> String {
    let (kind, attribute) = match cloud {
        Cloud::Aws | Cloud::Sandbox => ("aws_s3_bucket", "bucket"),
        Cloud::Gcp => ("gcp_storage_bucket", "name"),
        Cloud::Azure => ("azure_storage_container", "name"),
    };
    let bp = crate::blueprint::expand(config, cloud, facts).unwrap();
    let resource = bp
        .resources
        .iter()
        .find(|r| r.address.to_string() == format!("{kind}.{purpose}"))
        .unwrap_or_else(|| panic!("no {kind}.{purpose}"));
    match &resource.attributes[attribute] {
        flyteinfra_core::Expr::Value(v) => v.as_str().expect("a string").to_owned(),
        other => panic!("{kind}.{purpose}.{attribute} is {other:?}"),
    }
}

#[test]
fn state_bucket_may_not_be_a_flyte_bucket() {
    let facts = Facts {
        account_id: "123456789012".into(),
        ..Facts::offline()
    };
    let sections = |project: &str| {
        format!(
            "aws:\n  region: ap-southeast-2\ngcp:\n  project: {project}\n  region: us-central1\nazure:\n  subscription_id: 00000000-0000-0000-0000-000000000000\n  location: eastus\n  resource_group: rg\n"
        )
    };
    // Short names (full derived names) and long ones (hashed derived names).
    for (name, project) in [
        ("flyte-demo", "acme-prod-1"),
        (
            "a-deployment-name-of-thirty-ch",
            "acme-production-project-numb1",
        ),
    ] {
        let base = format!("name: {name}\ncloud: aws\n{}", sections(project));
        let config = parse(&base).unwrap();
        for cloud in Cloud::ALL {
            for (purpose, role) in [("metadata", "metadata"), ("data", "raw-data")] {
                let bucket = blueprint_bucket(&config, cloud, purpose, &facts);
                let text = format!("{base}state:\n  s3: {{bucket: {bucket}, region: us-east-1}}\n");
                let e = parse_err(&text);
                let wanted = format!(
                    "`state.s3.bucket` is `{bucket}`, which this config manages as Flyte's {role} bucket"
                );
                assert!(e.message().contains(&wanted), "{cloud} {purpose}: {e}");
                assert!(e.message().contains(&format!("on {cloud}")), "{e}");
                assert!(
                    e.message()
                        .ends_with("(a destroy would delete it), expected a separate bucket"),
                    "{e}"
                );
                assert_eq!(e.position(), Some(Position::new(13, 16)), "{e}");
            }
        }
    }
    // Another account's derived name is refused too: it names a Flyte bucket all the same.
    let base = format!("name: flyte-demo\ncloud: aws\n{}", sections("acme-prod-1"));
    let e = parse_err(&format!(
        "{base}state:\n  s3: {{bucket: flyte-demo-999999999999-ap-southeast-2-metadata, region: us-east-1}}\n"
    ));
    assert!(
        e.message().contains("on aws for account 999999999999"),
        "{e}"
    );
    // Chosen names replace the derived ones.
    let chosen =
        format!("{base}storage:\n  metadata_bucket: acme-meta\n  data_bucket: acme-data\n");
    for (bucket, key) in [("acme-meta", "metadata"), ("acme-data", "data")] {
        let e = parse_err(&format!(
            "{chosen}state:\n  s3: {{bucket: {bucket}, region: us-east-1}}\n"
        ));
        assert!(
            e.message().contains(&format!("(`storage.{key}_bucket`)")),
            "{e}"
        );
    }
    let derived = blueprint_bucket(&parse(&base).unwrap(), Cloud::Aws, "metadata", &facts);
    parse(&format!(
        "{chosen}state:\n  s3: {{bucket: {derived}, region: us-east-1}}\n"
    ))
    .unwrap();
    // Without a separate data bucket, the derived data name is no Flyte bucket.
    let one = format!("{base}storage:\n  separate_data_bucket: false\n");
    let data = blueprint_bucket(&parse(&base).unwrap(), Cloud::Gcp, "data", &facts);
    parse(&format!(
        "{one}state:\n  s3: {{bucket: {data}, region: us-east-1}}\n"
    ))
    .unwrap();
    // A bucket of its own is fine.
    parse(&format!("{base}{S3_STATE}")).unwrap();
}

/// A minimal sandbox: the servers' required keys only.
const SANDBOX: &str = "name: flyte-demo\nstyle: sandbox\nsandbox:\n  postgres:\n    host: localhost\n    admin_password_env: PG_PASSWORD\n  object_store:\n    endpoint: http://localhost:9000\n    access_key_env: S3_ACCESS_KEY\n    secret_key_env: S3_SECRET_KEY\n";

/// [`SANDBOX`] with `postgres` and `object_store` lines added (each indented under its
/// section) and `rest` appended.
fn sandbox_with(postgres: &str, object_store: &str, rest: &str) -> String {
    let indent = |lines: &str| -> String {
        lines
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let text = SANDBOX
        .replace(
            "    admin_password_env: PG_PASSWORD\n",
            &format!("    admin_password_env: PG_PASSWORD\n{}", indent(postgres)),
        )
        .replace(
            "    secret_key_env: S3_SECRET_KEY\n",
            &format!(
                "    secret_key_env: S3_SECRET_KEY\n{}",
                indent(object_store)
            ),
        );
    format!("{text}{rest}")
}

#[test]
fn sandbox_minimal_config_and_defaults() {
    let config = parse(SANDBOX).unwrap();
    assert_eq!(config.style, Style::Sandbox);
    // No `cloud:`: the sandbox, whose state is kept under `sandbox`.
    assert_eq!(config.cloud, Cloud::Sandbox);
    assert_eq!(config.select_cloud(None).unwrap(), Cloud::Sandbox);
    assert!(config.has_section(Cloud::Sandbox));
    assert!(Cloud::ALL.iter().all(|&c| !config.has_section(c)));
    let sandbox = config.sandbox.as_ref().unwrap();
    let pg = &sandbox.postgres;
    assert_eq!(
        (pg.host.as_str(), pg.port, pg.admin_user.as_str()),
        ("localhost", 5432, "postgres")
    );
    assert_eq!(pg.admin_password_env, "PG_PASSWORD");
    assert_eq!((pg.tls, &pg.ca_file), (PgTls::Require, &None));
    let store = &sandbox.object_store;
    assert_eq!(store.region, "us-east-1");
    assert!(store.path_style);
    assert_eq!(store.tls, None);
    assert!(!store.tls());
    // MinIO without a KMS: versioning and lifecycle, no SSE-S3, no public-access block.
    assert_eq!(
        store.capabilities,
        Capabilities {
            versioning: true,
            server_side_encryption: false,
            public_access_block: false,
            lifecycle: true,
        }
    );
    assert_eq!(store.capabilities, Capabilities::default());
    // The database's name, user and TLS come from `database`, as on the clouds.
    assert_eq!(config.database, DatabaseConfig::default());
    assert_eq!(config.storage, StorageConfig::default());
    assert_eq!(config.sandbox_ca_file(), None);

    // `cloud: sandbox` may be written too, and the same file results.
    let explicit = parse(&SANDBOX.replace("style:", "cloud: sandbox\nstyle:")).unwrap();
    assert_eq!(explicit, config);
    // An `https://` endpoint means TLS, which `tls: true` may repeat.
    let https = parse(&sandbox_with("", "tls: true", "").replace("http://", "https://")).unwrap();
    assert!(https.sandbox.unwrap().object_store.tls());
}

#[test]
fn sandbox_every_key_set() {
    let text = sandbox_with(
        "port: 30001\nadmin_user: flyte_admin\ntls: verify-full\nca_file: certs/ca.pem",
        "region: eu-local-1\npath_style: true\ntls: false\ncapabilities: {versioning: false, server_side_encryption: true, public_access_block: true, lifecycle: false}",
        "database:\n  name: flyte_db\n  username: flyte_user\n  require_ssl: false\nstorage:\n  metadata_bucket: flyte.meta\n  data_bucket: flyte.data\n",
    );
    let config = Config::parse(&text, Path::new("deploy/sandbox/flyte.yaml")).unwrap();
    let sandbox = config.sandbox.as_ref().unwrap();
    let pg = &sandbox.postgres;
    assert_eq!(
        (pg.port, pg.admin_user.as_str(), pg.tls),
        (30001, "flyte_admin", PgTls::VerifyFull)
    );
    // `ca_file` is relative to the config file, as `state.local.path` is.
    assert_eq!(
        config.sandbox_ca_file().as_deref(),
        Some(Path::new("deploy/sandbox/certs/ca.pem"))
    );
    let store = &sandbox.object_store;
    assert_eq!(
        (store.region.as_str(), store.path_style, store.tls),
        ("eu-local-1", true, Some(false))
    );
    assert_eq!(
        store.capabilities,
        Capabilities {
            versioning: false,
            server_side_encryption: true,
            public_access_block: true,
            lifecycle: false,
        }
    );
    assert!(!config.database.require_ssl);
    // Dots are fine in S3 bucket names.
    assert_eq!(
        config.storage.metadata_bucket.as_deref(),
        Some("flyte.meta")
    );
    // It round-trips through JSON (which is YAML).
    let json = serde_json::to_string(&config).unwrap();
    let again = Config::parse(&json, Path::new("deploy/sandbox/flyte.yaml")).unwrap();
    assert_eq!(again, config);
}

#[test]
fn sandbox_tls_disable_turns_require_ssl_off_unless_written() {
    let config = parse(&sandbox_with("tls: disable", "", "")).unwrap();
    assert!(!config.database.require_ssl);
    let config = parse(&sandbox_with(
        "tls: disable",
        "",
        "database:\n  require_ssl: false\n",
    ))
    .unwrap();
    assert!(!config.database.require_ssl);
    // Other TLS settings leave the default alone.
    for tls in ["require", "verify-full"] {
        let config = parse(&sandbox_with(&format!("tls: {tls}"), "", "")).unwrap();
        assert!(config.database.require_ssl, "{tls}");
    }
    // Not for other styles' configs: the inference is the sandbox's.
    let e = parse_err(&sandbox_with(
        "tls: disable",
        "",
        "database:\n  require_ssl: true\n",
    ));
    assert_eq!(e.position(), Some(Position::new(13, 16)), "{e}");
}

#[test]
fn cloud_is_required_outside_the_sandbox() {
    // Today's message, at the top of the document, for every style but the sandbox.
    for style in ["", "style: single-cluster\n"] {
        let e = parse_err(&format!(
            "name: flyte-demo\n{style}aws:\n  region: us-east-1\n"
        ));
        assert_eq!(e.kind(), ConfigErrorKind::Shape);
        assert_eq!(e.position(), Some(Position::new(1, 1)), "{e}");
        assert_eq!(
            e.message(),
            "missing required key `cloud` at the top level, expected a mapping with at least `name` and `cloud`"
        );
    }
    // A missing name is still reported first.
    let e = parse_err("style: sandbox\n");
    assert!(e.message().contains("missing required key `name`"), "{e}");
    // Errors found while reading come before the missing `cloud`.
    let e = parse_err("name: flyte-demo\naws:\n  region: us-east-1\n  nat_gateways: many\n");
    assert!(e.message().contains("unknown value `many`"), "{e}");
}

#[test]
fn sandbox_and_cloud_overrides() {
    let sandbox = parse(SANDBOX).unwrap();
    assert_eq!(
        sandbox.select_cloud(Some(Cloud::Sandbox)).unwrap(),
        Cloud::Sandbox
    );
    let e = sandbox.select_cloud(Some(Cloud::Aws)).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "flyte.yaml:1:1: `--cloud aws` selects aws but `style` is `sandbox`, which runs on no cloud, expected `--cloud sandbox` or no `--cloud`"
    );
    let aws = parse(MINIMAL).unwrap();
    let e = aws.select_cloud(Some(Cloud::Sandbox)).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "flyte.yaml:1:1: `--cloud sandbox` selects the sandbox but `style` is `single-cluster`, expected `style: sandbox` with a `sandbox:` section, or another `--cloud`"
    );
    // A config built in code is checked the same way.
    let mut built = Config::new("flyte-demo", Cloud::Sandbox);
    built.aws = Some(AwsConfig::new("us-east-1"));
    let e = built.validate().unwrap_err();
    assert!(
        e.message()
            .contains("`cloud` is `sandbox` but `style` is `single-cluster`"),
        "{e}"
    );
    let e = built.select_cloud(None).unwrap_err();
    assert!(
        e.message()
            .contains("`cloud` is `sandbox` but `style` is `single-cluster`"),
        "{e}"
    );
}

#[test]
fn sandbox_rules_are_located() {
    let secret_line = "SECRET-VALUE-hunter2";
    let cases: Vec<(String, (u32, u32), &str)> = vec![
        // The section itself.
        (
            "name: flyte-demo\nstyle: sandbox\nsandbox:\n".to_owned(),
            (3, 8),
            "`sandbox` is empty, expected `sandbox: {postgres:",
        ),
        (
            "name: flyte-demo\nstyle: sandbox\nsandbox: {}\n".to_owned(),
            (3, 1),
            "missing required key `postgres` in `sandbox`",
        ),
        (
            format!("{SANDBOX}data_planes:\n  - name: gpu\n"),
            (12, 3),
            "`data_planes` is set but `style` is `sandbox`",
        ),
        (
            format!(
                "{SANDBOX}control_plane:\n  admin_endpoint: a.b:81\n  catalog_endpoint: a.b:89\n"
            ),
            (12, 3),
            "`control_plane` is set but `style` is `sandbox`",
        ),
        (
            SANDBOX.replace("style: sandbox", "style: multi-cluster\ncloud: sandbox"),
            (3, 8),
            "`cloud` is `sandbox` but `style` is `multi-cluster`",
        ),
        (
            format!("{SANDBOX}gcp:\n  project: my-project\n  region: us-central1\n"),
            (12, 3),
            "`gcp` is set but `style: sandbox` runs on no cloud, expected no `gcp` section",
        ),
        // sandbox.postgres
        (
            SANDBOX.replace("host: localhost", "host: postgres://db:5432"),
            (5, 11),
            "`sandbox.postgres.host` is `postgres://db:5432`, expected a host name or IP address",
        ),
        (
            SANDBOX.replace("host: localhost", "host: 'db host'"),
            (5, 11),
            "no scheme, no port",
        ),
        (
            sandbox_with("port: 0", "", ""),
            (7, 11),
            "`sandbox.postgres.port` is 0, expected a port from 1 to 65535",
        ),
        (
            sandbox_with("port: 70000", "", ""),
            (7, 11),
            "`sandbox.postgres.port` is `70000`, expected a whole number from 0 to 65535",
        ),
        (
            sandbox_with("admin_user: Admin", "", ""),
            (7, 17),
            "`sandbox.postgres.admin_user` is `Admin`, expected a PostgreSQL role name",
        ),
        (
            sandbox_with("admin_user: app", "", "database:\n  username: app\n"),
            (7, 17),
            "`sandbox.postgres.admin_user` is `app`, the same as `database.username`",
        ),
        (
            sandbox_with("tls: verify-full\nca_file: ''", "", ""),
            (8, 14),
            "`sandbox.postgres.ca_file` is empty",
        ),
        (
            sandbox_with(
                "ca_file: ca.pem\ntls: disable",
                "",
                "database:\n  require_ssl: false\n",
            ),
            (7, 14),
            "`sandbox.postgres.tls` is `disable`, which verifies no certificate",
        ),
        (
            sandbox_with("sslmode: require", "", ""),
            (7, 5),
            "unknown key `sslmode` in `sandbox.postgres`",
        ),
        // sandbox.object_store
        (
            SANDBOX.replace("http://localhost:9000", "ftp://localhost:9000"),
            (8, 15),
            "which has another scheme",
        ),
        (
            SANDBOX.replace("http://localhost:9000", "http://localhost:9000/bucket"),
            (8, 15),
            "which has a path, query or fragment",
        ),
        (
            SANDBOX.replace("http://localhost:9000", "http://localhost:0"),
            (8, 15),
            "which has no port from 1 to 65535 after `:`",
        ),
        (
            SANDBOX.replace("http://localhost:9000", "http://"),
            (8, 15),
            "which has no host",
        ),
        (
            SANDBOX.replace("http://localhost:9000", "http://[::1"),
            (8, 15),
            "which has an unclosed `[`",
        ),
        (
            sandbox_with("", "region: 'us east'", ""),
            (11, 13),
            "`sandbox.object_store.region` is `us east`, expected the region the store signs for",
        ),
        (
            SANDBOX.replace(
                "secret_key_env: S3_SECRET_KEY",
                "secret_key_env: S3_ACCESS_KEY",
            ),
            (10, 21),
            "`sandbox.object_store.secret_key_env` names `S3_ACCESS_KEY`, as `access_key_env` does",
        ),
        (
            sandbox_with("", "tls: false", "").replace("http://", "https://"),
            (11, 10),
            "`sandbox.object_store.tls` is `false` but `endpoint` is `https://`",
        ),
        (
            sandbox_with("", "path_style: maybe", ""),
            (11, 17),
            "`sandbox.object_store.path_style` is `maybe`, expected `true` or `false`",
        ),
        (
            sandbox_with("", "capabilities: {sse: true}", ""),
            (11, 20),
            "unknown key `sse` in `sandbox.object_store.capabilities`",
        ),
        // Storage names follow S3's rules on the sandbox, derived ones too.
        (
            SANDBOX.replace("name: flyte-demo", "name: xn--demo"),
            (1, 7),
            "`name` is `xn--demo`, so the sandbox's metadata bucket would be \
             `xn--demo-metadata`, which starts with `xn--`, a prefix S3 reserves, expected \
             another `name` or a valid S3 bucket name in `storage.metadata_bucket`",
        ),
        (
            format!(
                "{}storage:\n  metadata_bucket: meta\n",
                SANDBOX.replace("name: flyte-demo", "name: sthree-demo")
            ),
            (1, 7),
            "the sandbox's data bucket would be `sthree-demo-data`, which starts with `sthree-`",
        ),
        (
            format!("{SANDBOX}storage:\n  data_bucket: 10.1.2.3\n"),
            (12, 16),
            "`storage.data_bucket` is `10.1.2.3`, which is shaped like an IP address, expected an S3 bucket name",
        ),
        (
            format!("{SANDBOX}storage:\n  metadata_bucket: ab\n"),
            (12, 20),
            "which is 2 characters long",
        ),
        // Secrets written where variable names belong are never echoed.
        (
            SANDBOX.replace("PG_PASSWORD", secret_line),
            (6, 25),
            "`sandbox.postgres.admin_password_env` is not an environment variable name, expected one such as `FLYTEINFRA_PG_ADMIN_PASSWORD`",
        ),
        (
            SANDBOX.replace("S3_ACCESS_KEY", secret_line),
            (9, 21),
            "`sandbox.object_store.access_key_env` is not an environment variable name, expected one such as `FLYTEINFRA_S3_ACCESS_KEY`",
        ),
        (
            SANDBOX.replace("S3_SECRET_KEY", secret_line),
            (10, 21),
            "`sandbox.object_store.secret_key_env` is not an environment variable name, expected one such as `FLYTEINFRA_S3_SECRET_KEY`",
        ),
        (
            SANDBOX.replace(
                "http://localhost",
                &format!("http://minio:{secret_line}@localhost"),
            ),
            (8, 15),
            "`sandbox.object_store.endpoint` has a user or password in it",
        ),
        (
            SANDBOX.replace(
                "host: localhost",
                &format!("host: postgres:{secret_line}@db"),
            ),
            (5, 11),
            "`sandbox.postgres.host` has a `@`",
        ),
    ];
    let mut failures = Vec::new();
    for (text, (line, column), substring) in &cases {
        let e = match parse(text) {
            Ok(_) => {
                failures.push(format!("parsed, wanted {substring:?}:\n{text}"));
                continue;
            }
            Err(e) => e,
        };
        if !e.message().contains(substring) {
            failures.push(format!("{e}\n    wanted {substring:?}"));
        }
        if e.position() != Some(Position::new(*line, *column)) {
            failures.push(format!("{e}\n    wanted {line}:{column}"));
        }
        if !e.message().contains("expected") {
            failures.push(format!("{e}\n    does not say what was expected"));
        }
        if e.to_string().contains("hunter2") {
            failures.push(format!("{e}\n    echoes a secret"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn sandbox_state_bucket_may_not_be_a_flyte_bucket() {
    let facts = Facts::offline();
    let config = parse(SANDBOX).unwrap();
    for (purpose, role) in [("metadata", "metadata"), ("data", "raw-data")] {
        let bucket = blueprint_bucket(&config, Cloud::Sandbox, purpose, &facts);
        assert_eq!(bucket, format!("flyte-demo-{purpose}"));
        let e = parse_err(&format!(
            "{SANDBOX}state:\n  s3: {{bucket: {bucket}, region: us-east-1}}\n"
        ));
        assert!(
            e.message().contains(&format!(
                "`state.s3.bucket` is `{bucket}`, which this config manages as Flyte's {role} \
                 bucket (the name it derives on sandbox)"
            )),
            "{e}"
        );
    }
    // Chosen names replace the derived ones; one bucket leaves the data name free.
    let chosen = format!("{SANDBOX}storage:\n  metadata_bucket: meta.bucket\n  data_bucket: raw\n");
    let e = parse_err(&format!(
        "{chosen}state:\n  s3: {{bucket: meta.bucket, region: us-east-1}}\n"
    ));
    assert!(e.message().contains("(`storage.metadata_bucket`)"), "{e}");
    parse(&format!(
        "{chosen}state:\n  s3: {{bucket: flyte-demo-metadata, region: us-east-1}}\n"
    ))
    .unwrap();
    parse(&format!(
        "{SANDBOX}storage:\n  separate_data_bucket: false\nstate:\n  s3: {{bucket: flyte-demo-data, region: us-east-1}}\n"
    ))
    .unwrap();
}

#[test]
fn sandbox_hosts_and_endpoints_accepted() {
    for host in [
        "localhost",
        "10.0.0.5",
        "::1",
        "fd00::5",
        "db-1.flyte.svc.cluster.local",
    ] {
        parse(&SANDBOX.replace("host: localhost", &format!("host: '{host}'")))
            .unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    for endpoint in [
        "http://localhost:9000",
        "http://localhost:9000/",
        "https://minio.example.com",
        "http://10.0.0.7",
        "http://[::1]:9000",
        "https://[fd00::7]",
    ] {
        let config = parse(&SANDBOX.replace("http://localhost:9000", endpoint))
            .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        let store = config.sandbox.unwrap().object_store;
        assert_eq!(store.tls(), endpoint.starts_with("https"), "{endpoint}");
    }
}
