//! A provider that panics (a bug) fails its resource, not the apply: through the binary,
//! with the simulated cloud's create of one resource panicking (`FLYTEINFRA_SIMULATE_PANIC`).

use crate::util::TestContext;

#[test]
fn a_provider_panic_fails_one_resource_and_the_rest_is_applied() {
    let ctx = TestContext::minimal();
    let run = ctx.run_env(
        &["apply", "--auto-approve"],
        &[("FLYTEINFRA_SIMULATE_PANIC", "aws_s3_bucket.data")],
    );
    // Exit 1 like any failed apply (a panic that escaped would be 101). Not `expect_code`:
    // the panic hook's report of the provider's panic is on stderr, for the bug report.
    assert_eq!((run.code, run.signal), (Some(1), None), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error: `aws_s3_bucket.data`: internal error in provider for `aws_s3_bucket.data`: \
             simulated provider bug; please report it"
        ),
        "{}",
        run.stderr
    );
    // Only what depends on the bucket was skipped; everything else is in state.
    assert!(
        run.stderr.contains(
            "skipped because something they depend on failed: `aws_iam_role.flyte_backend`, \
             `aws_iam_role.flyte_tasks`"
        ),
        "{}",
        run.stderr
    );
    let addresses = ctx.state_addresses();
    for a in [
        "aws_s3_bucket.metadata",
        "aws_db_instance.main",
        "aws_eks_node_group.main",
    ] {
        assert!(addresses.contains(a), "{a} is not in state: {addresses:?}");
    }
    assert!(!addresses.contains("aws_s3_bucket.data"));
    assert_eq!(addresses.len(), 22, "{addresses:?}");

    // The bug gone, the next apply finishes the rest.
    ctx.apply();
    assert_eq!(ctx.state_addresses().len(), 25);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}
