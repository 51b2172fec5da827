//! This test binary's moto server, reached through the proxy that answers as AWS does
//! (`flyteinfra-aws-proxy`, a test double); `upstream` is moto itself, for a test's own
//! fault-injecting proxy.

pub use flyteinfra_aws_proxy::moto::{upstream, url};
