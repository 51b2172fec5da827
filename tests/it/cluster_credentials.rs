//! Multi-cluster access: `flyteinfra cluster-credentials` against two Kubernetes API test
//! doubles (two data planes) on loopback, and `flyteinfra kubeconfig` for every cluster or
//! the one `--cluster` names. The state is fabricated with the outputs the multi-cluster
//! blueprint writes (the control plane's unprefixed, each plane's `dp_<plane>_…`).

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use flyteinfra_k8s_double::K8sDouble;
use serde_json::{Value, json};

use crate::util::{Run, TestContext};

const CONFIG: &str = "\
name: demo
cloud: aws
style: multi-cluster
aws:
  region: us-east-1
control_plane:
  admin_endpoint: flyteadmin.flyte.internal:81
  catalog_endpoint: datacatalog.flyte.internal:89
data_planes:
  - name: east
  - name: west
";

const EAST_ARN: &str = "arn:aws:eks:us-east-1:123456789012:cluster/demo-east";
const CONTROL_ARN: &str = "arn:aws:eks:us-east-1:123456789012:cluster/demo";
const WEST_ARN: &str = "arn:aws:eks:us-east-1:123456789012:cluster/demo-west";

/// The `flyteadmin` tokens the planes hand out, and the callers' own credentials: none
/// may appear in any output.
const EAST_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.east-flyteadmin-sa-token.c2lnbmF0dXJl";
const WEST_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.west-flyteadmin-sa-token.c2lnbmF0dXJl";
const EAST_CALLER: &str = "east-admin-caller-credential-0001";
const WEST_CALLER: &str = "west-admin-caller-credential-0002";
const EAST_CA: &str = "-----BEGIN CERTIFICATE-----\nRUFTVC1DQQ==\n-----END CERTIFICATE-----\n";
const WEST_CA: &str = "-----BEGIN CERTIFICATE-----\nV0VTVC1DQQ==\n-----END CERTIFICATE-----\n";

/// A state holding what apply of [`CONFIG`] leaves for access: the control plane's
/// cluster outputs and each plane's.
fn write_state(ctx: &TestContext) {
    let mut outputs = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        outputs.insert(k.to_string(), json!({ "value": v, "sensitive": false }));
    };
    put("region", "us-east-1");
    for (prefix, name, arn) in [
        ("", "demo", CONTROL_ARN),
        ("dp_east_", "demo-east", EAST_ARN),
        ("dp_west_", "demo-west", WEST_ARN),
    ] {
        put(&format!("{prefix}cluster_name"), name);
        put(&format!("{prefix}cluster_arn"), arn);
        put(
            &format!("{prefix}cluster_endpoint"),
            &format!("https://{name}.gr7.us-east-1.eks.amazonaws.com"),
        );
        put(&format!("{prefix}cluster_ca"), "Q0EK");
    }
    let doc = json!({
        "format_version": 2,
        "lineage": "3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b",
        "serial": 1,
        "deployment": "demo",
        "cloud": "aws",
        "resources": {},
        "outputs": outputs,
    });
    fs::create_dir_all(ctx.state_dir()).unwrap();
    fs::write(ctx.state_path(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

/// Two data planes, each an API server double holding its `flyteadmin` ServiceAccount and
/// filled token Secret, and a kubeconfig reaching them: east under the name `flyteinfra
/// kubeconfig` gives it (its ARN), west under its plain cluster name.
struct Planes {
    ctx: TestContext,
    east: K8sDouble,
    west: K8sDouble,
}

impl Planes {
    fn new() -> Planes {
        let ctx = TestContext::new(CONFIG);
        write_state(&ctx);
        let planes = Planes {
            ctx,
            east: K8sDouble::start(EAST_CALLER),
            west: K8sDouble::start(WEST_CALLER),
        };
        for (d, token, ca) in [
            (&planes.east, EAST_TOKEN, EAST_CA),
            (&planes.west, WEST_TOKEN, WEST_CA),
        ] {
            d.add_service_account("flyte", "flyteadmin");
            d.add_token_secret(
                "flyte",
                "flyteadmin-token",
                "flyteadmin",
                Some((token.as_bytes(), ca.as_bytes())),
            );
        }
        planes.write_kubeconfig(&[(EAST_ARN, EAST_CALLER), ("demo-west", WEST_CALLER)]);
        planes
    }

    fn kubeconfig(&self) -> PathBuf {
        self.ctx.dir().join("planes.kubeconfig")
    }

    fn out(&self) -> PathBuf {
        self.ctx.dir().join("cluster-credentials.yaml")
    }

    /// Contexts `(name, bearer token)`: the first names east's server, the second west's.
    fn write_kubeconfig(&self, contexts: &[(&str, &str)]) {
        let servers = [self.east.url(), self.west.url()];
        let mut doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [],
            "users": [],
            "contexts": [],
            // Another cluster, never called.
            "current-context": "kind-elsewhere",
        });
        for (i, (name, token)) in contexts.iter().enumerate() {
            doc["clusters"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "name": format!("c{i}"), "cluster": { "server": servers[i] } }));
            doc["users"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "name": format!("u{i}"), "user": { "token": token } }));
            doc["contexts"].as_array_mut().unwrap().push(
                json!({ "name": name, "context": { "cluster": format!("c{i}"), "user": format!("u{i}") } }),
            );
        }
        fs::write(self.kubeconfig(), serde_json::to_vec(&doc).unwrap()).unwrap();
    }

    fn run(&self) -> Run {
        self.ctx.run_env(
            &[
                "cluster-credentials",
                "--kubeconfig",
                self.kubeconfig().to_str().unwrap(),
                "--out",
                self.out().to_str().unwrap(),
            ],
            &[
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("HOME", self.ctx.dir().to_str().unwrap()),
            ],
        )
    }

    /// One clear error, no Secret file, and no credential in any output.
    #[track_caller]
    fn fails(&self, needles: &[&str]) -> Run {
        let r = self.run();
        r.expect_code(1);
        assert_no_credential(&r);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", r.stderr);
        for n in needles {
            assert!(r.stderr.contains(n), "missing {n:?} in:\n{}", r.stderr);
        }
        assert!(!self.out().exists(), "a file was written despite the error");
        r
    }
}

#[track_caller]
fn assert_no_credential(r: &Run) {
    for secret in [EAST_TOKEN, WEST_TOKEN, EAST_CALLER, WEST_CALLER] {
        assert!(!r.all().contains(secret), "a token leaked:\n{}", r.all());
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn cluster_credentials_reads_every_plane_and_writes_the_control_planes_secret() {
    let p = Planes::new();
    let r = p.run();
    r.ok();
    assert_no_credential(&r);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    for needle in [
        &format!("`east` (context `{EAST_ARN}`)"),
        "`west` (context `demo-west`)",
        &format!("`{}` (mode 0600)", p.out().display()),
    ] {
        assert!(r.stderr.contains(needle), "{needle}\n{}", r.stderr);
    }

    assert_eq!(crate::util::mode(&p.out()), 0o600);
    let secret: Value = serde_saphyr::from_str(&fs::read_to_string(p.out()).unwrap()).unwrap();
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(
        secret["metadata"],
        json!({ "name": "cluster-credentials", "namespace": "flyte" })
    );
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["data"],
        json!({
            "east_cacert": b64(EAST_CA),
            "east_token": b64(EAST_TOKEN),
            "west_cacert": b64(WEST_CA),
            "west_token": b64(WEST_TOKEN),
        })
    );
    assert!(secret.get("stringData").is_none());

    // Each plane was asked exactly for its ServiceAccount, then its token Secret, with
    // the context's own credential.
    for d in [&p.east, &p.west] {
        let asked: Vec<(String, String, bool, u16)> = d
            .requests()
            .into_iter()
            .map(|r| (r.method, r.path, r.authorized, r.status))
            .collect();
        assert_eq!(
            asked,
            [
                (
                    "GET".to_string(),
                    "/api/v1/namespaces/flyte/serviceaccounts/flyteadmin".to_string(),
                    true,
                    200
                ),
                (
                    "GET".to_string(),
                    "/api/v1/namespaces/flyte/secrets/flyteadmin-token".to_string(),
                    true,
                    200
                ),
            ]
        );
    }
}

#[test]
fn cluster_credentials_without_a_planes_context_lists_the_files_contexts() {
    let p = Planes::new();
    p.write_kubeconfig(&[(EAST_ARN, EAST_CALLER), ("someone-else", WEST_CALLER)]);
    p.fails(&[
        &format!(
            "`{}` has no context for data plane `west`",
            p.kubeconfig().display()
        ),
        &format!("`{WEST_ARN}` or `demo-west`"),
        &format!("its contexts: `{EAST_ARN}`, `someone-else`"),
        "flyteinfra kubeconfig --merge",
    ]);
    // Found before any cluster is called.
    assert!(p.east.requests().is_empty());
    assert!(p.west.requests().is_empty());
}

#[test]
fn cluster_credentials_without_the_service_account_says_to_install_the_plane_first() {
    let p = Planes::new();
    // A west plane where nothing was installed yet.
    let west = K8sDouble::start(WEST_CALLER);
    let p = Planes { west, ..p };
    p.write_kubeconfig(&[(EAST_ARN, EAST_CALLER), ("demo-west", WEST_CALLER)]);
    p.fails(&[
        "data plane `west` (context `demo-west`) has no ServiceAccount `flyteadmin` in namespace `flyte`",
        "`helm install`",
        "`kubectl apply -f flyteadmin-token-demo-west.yaml`",
    ]);
}

#[test]
fn cluster_credentials_without_the_token_secret_or_its_token_names_the_manifest() {
    let p = Planes::new();
    let west = K8sDouble::start(WEST_CALLER);
    west.add_service_account("flyte", "flyteadmin");
    let p = Planes { west, ..p };
    p.write_kubeconfig(&[(EAST_ARN, EAST_CALLER), ("demo-west", WEST_CALLER)]);
    p.fails(&[
        "data plane `west` (context `demo-west`) has no Secret `flyteadmin-token` in namespace `flyte`",
        "`kubectl apply -f flyteadmin-token-demo-west.yaml` (its token Secret, written by `flyteinfra values --out-dir`",
    ]);

    // Applied, but the token controller has not filled it in.
    p.west
        .add_token_secret("flyte", "flyteadmin-token", "flyteadmin", None);
    p.fails(&[
        "the Secret `flyteadmin-token` in namespace `flyte` of data plane `west` (context `demo-west`) has no `token`",
        "apply `flyteadmin-token-demo-west.yaml`",
    ]);
}

#[test]
fn cluster_credentials_with_a_refused_bearer_token_never_shows_it() {
    let p = Planes::new();
    p.write_kubeconfig(&[(EAST_ARN, EAST_CALLER), ("demo-west", EAST_CALLER)]);
    p.fails(&[
        "data plane `west` (context `demo-west`) refused the context's credentials (401 Unauthorized)",
    ]);
    let refused = p.west.requests();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(!refused[0].authorized);
    assert_eq!(refused[0].status, 401);
}

#[test]
fn cluster_credentials_refuses_a_single_cluster_deployment() {
    let ctx = TestContext::minimal();
    let kube = ctx.dir().join("kube.yaml");
    fs::write(&kube, "apiVersion: v1\nkind: Config\n").unwrap();
    let r = ctx.run_env(
        &[
            "cluster-credentials",
            "--kubeconfig",
            kube.to_str().unwrap(),
        ],
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("`cluster-credentials` is for `style: multi-cluster` deployments"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`style: single-cluster`"), "{}", r.stderr);
    assert!(!ctx.dir().join("cluster-credentials.yaml").exists());
}

/// The names of a kubeconfig's entries in `list`.
fn entry_names(doc: &Value, list: &str) -> Vec<String> {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {doc}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kubeconfig_of_a_multi_cluster_deployment_prints_the_cluster_named() {
    let ctx = TestContext::new(CONFIG);
    write_state(&ctx);
    // Several clusters and nowhere to put them: ask which.
    let r = ctx.run(&["kubeconfig"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains(
            "this deployment has 3 clusters (`control`, `east`, `west`): pick one with \
             `--cluster NAME`, or write them all with `--out FILE` or `--merge`"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());

    let r = ctx.run(&["kubeconfig", "--cluster", "east"]);
    r.ok();
    let doc: Value = serde_saphyr::from_str(&r.stdout).unwrap();
    assert_eq!(doc["current-context"], EAST_ARN);
    assert_eq!(
        doc["clusters"][0]["cluster"]["server"],
        "https://demo-east.gr7.us-east-1.eks.amazonaws.com"
    );
    let exec = &doc["users"][0]["user"]["exec"];
    assert_eq!(
        exec["args"],
        json!([
            "eks",
            "get-token",
            "--cluster-name",
            "demo-east",
            "--region",
            "us-east-1"
        ])
    );
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(entry_names(&doc, list), [EAST_ARN], "{list}");
    }

    let r = ctx.run(&["kubeconfig", "--cluster", "control"]);
    r.ok();
    let doc: Value = serde_saphyr::from_str(&r.stdout).unwrap();
    assert_eq!(entry_names(&doc, "contexts"), [CONTROL_ARN]);

    let r = ctx.run(&["kubeconfig", "--cluster", "north"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains(
            "`--cluster north` is not a cluster of this deployment, expected one of `control`, \
             `east`, `west`"
        ),
        "{}",
        r.stderr
    );

    // A single-cluster deployment has nothing to pick and keeps printing its one cluster.
    let single = TestContext::minimal();
    let r = single.run(&["kubeconfig", "--cluster", "control"]);
    r.expect_code(1);
    assert!(r.stderr.contains("leave `--cluster` out"), "{}", r.stderr);
}

#[test]
fn kubeconfig_writes_and_merges_every_cluster_of_a_multi_cluster_deployment() {
    let ctx = TestContext::new(CONFIG);
    write_state(&ctx);
    let all = [CONTROL_ARN, EAST_ARN, WEST_ARN];

    let out = ctx.dir().join("all.yaml");
    ctx.run(&["kubeconfig", "--out", out.to_str().unwrap()])
        .ok();
    assert_eq!(crate::util::mode(&out), 0o600);
    let doc: Value = serde_saphyr::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(doc["current-context"], CONTROL_ARN);
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(entry_names(&doc, list), all, "{list}");
    }
    let servers: BTreeSet<&str> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers.len(), 3);

    // Merged beside someone else's cluster, twice: theirs kept, ours not duplicated.
    let kube = ctx.dir().join("kube").join("config");
    fs::create_dir_all(kube.parent().unwrap()).unwrap();
    let theirs = "apiVersion: v1\nkind: Config\nclusters:\n- name: kind\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: kind\n  context:\n    cluster: kind\n    user: kind\nusers:\n- name: kind\n  user:\n    token: abc\ncurrent-context: kind\n";
    fs::write(&kube, theirs).unwrap();
    let env = [("KUBECONFIG", kube.to_str().unwrap())];
    let r = ctx.run_env(&["kubeconfig", "--merge"], &env);
    r.ok();
    assert!(
        r.stderr.contains(&format!(
            "made the control plane's `{CONTROL_ARN}` the current context"
        )),
        "{}",
        r.stderr
    );
    ctx.run_env(&["kubeconfig", "--merge"], &env).ok();
    let merged: Value = serde_saphyr::from_str(&fs::read_to_string(&kube).unwrap()).unwrap();
    assert_eq!(merged["current-context"], CONTROL_ARN);
    for list in ["clusters", "users", "contexts"] {
        let mut expected = vec!["kind"];
        expected.extend(all);
        assert_eq!(entry_names(&merged, list), expected, "{list}");
    }
    assert_eq!(merged["users"][0]["user"]["token"], "abc");

    // `--cluster` with `--merge` adds that one only, and makes it current.
    fs::write(&kube, theirs).unwrap();
    ctx.run_env(&["kubeconfig", "--merge", "--cluster", "west"], &env)
        .ok();
    let merged: Value = serde_saphyr::from_str(&fs::read_to_string(&kube).unwrap()).unwrap();
    assert_eq!(entry_names(&merged, "contexts"), ["kind", WEST_ARN]);
    assert_eq!(merged["current-context"], WEST_ARN);
}
