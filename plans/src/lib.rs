//! flyteinfra plans (placeholder until written).
