//! flyteinfra flyte (placeholder until written).
