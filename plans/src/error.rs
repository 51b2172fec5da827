//! Why a plan cannot be made, saved or loaded.

use std::path::PathBuf;

use flyteinfra_core::{Address, GraphError, Reference};

/// Why a plan cannot be made, saved or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The desired resources do not form a valid graph (a cycle, a reference to a
    /// resource that does not exist, a duplicate). An engine (blueprint) bug.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The dependencies recorded in state form a cycle: the state is corrupt.
    #[error("the dependencies recorded in state are invalid")]
    StateGraph(#[source] GraphError),
    /// No provider registers the resource's type.
    #[error("`{address}` has type `{type_name}`, which no provider registers")]
    UnknownType {
        /// The resource.
        address: Address,
        /// Its type.
        type_name: String,
    },
    /// A desired attribute is not a field of the resource's type.
    #[error("`{address}` sets `{field}`, which its type does not have")]
    UnknownAttribute {
        /// The resource.
        address: Address,
        /// The attribute.
        field: String,
    },
    /// A desired attribute is computed by the cloud and cannot be set.
    #[error("`{address}` sets `{field}`, which is computed by the cloud and cannot be set")]
    NotAnInput {
        /// The resource.
        address: Address,
        /// The attribute.
        field: String,
    },
    /// A required field is not among the desired attributes.
    #[error("`{address}` does not set required field `{field}`")]
    MissingRequired {
        /// The resource.
        address: Address,
        /// The field.
        field: String,
    },
    /// A reference names an attribute the referenced resource's type does not have.
    #[error(
        "`{address}` refers to `{}.{}`, which its type does not have",
        reference.address,
        reference.attribute
    )]
    UnknownReferencedAttribute {
        /// The referring resource.
        address: Address,
        /// The bad reference.
        reference: Reference,
    },
    /// An `existing:` resource was not found in the cloud.
    #[error("existing resource `{address}` (id `{id}`) was not found in the cloud")]
    ExistingNotFound {
        /// The resource.
        address: Address,
        /// The id it was looked up by.
        id: String,
    },
    /// A `--replace` names something flyteinfra does not manage in this configuration.
    #[error("cannot replace `{address}`: {why}")]
    CannotReplace {
        /// The address given.
        address: Address,
        /// Why not.
        why: &'static str,
    },
    /// A `--target` is neither in the configuration nor in the state.
    #[error("target `{0}` is neither in the configuration nor in the state")]
    UnknownTarget(Address),
    /// A sealed plan file cannot be opened (no key or the wrong one), or sealing failed.
    #[error(transparent)]
    Sealed(#[from] flyteinfra_state::StateError),
    /// A plan file could not be read or written.
    #[error("cannot {action} plan file `{}`", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The plan file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A plan file is not valid JSON, not a plan file, or holds what no plan flyteinfra
    /// made holds (a cycle, a lineage that is not one, a type no provider registers).
    #[error(
        "plan file `{}` is corrupt{}{}: {reason}",
        path.display(),
        location(*line, *column),
        field_part(field)
    )]
    Corrupt {
        /// The plan file.
        path: PathBuf,
        /// The line of the error, from 1; 0 when unknown.
        line: usize,
        /// The column of the error, from 1; 0 when unknown.
        column: usize,
        /// The field (`plan.changes[3].action`); empty for the file as a whole.
        field: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A plan file made for another state (its lineage differs: the state was replaced
    /// or recreated since, or the plan belongs elsewhere).
    #[error(
        "plan file `{}` was made for another state{}, field `plan.lineage`: it is for state lineage {plan_lineage}, but the state has lineage {state_lineage} (replaced or recreated since?); run `flyteinfra plan` again",
        path.display(),
        location(*line, *column)
    )]
    OtherState {
        /// The plan file.
        path: PathBuf,
        /// The line of `plan.lineage`, from 1; 0 when unknown.
        line: usize,
        /// The column of `plan.lineage`, from 1; 0 when unknown.
        column: usize,
        /// The lineage the plan was made for.
        plan_lineage: String,
        /// The lineage of the state.
        state_lineage: String,
    },
    /// A plan file was written by a build with another plan file format.
    #[error(
        "plan file `{}` has format version `{found}`{}, but this build reads only version `{expected}`; run `flyteinfra plan` again",
        path.display(),
        version_at(*line, *column)
    )]
    UnsupportedVersion {
        /// The plan file.
        path: PathBuf,
        /// The line of `format_version`, from 1; 0 when unknown.
        line: usize,
        /// The column of `format_version`, from 1; 0 when unknown.
        column: usize,
        /// The version it records.
        found: String,
        /// The version this build reads.
        expected: String,
    },
}

fn location(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at {line}:{column}")
    }
}

fn field_part(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(", field `{field}`")
    }
}

fn version_at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" (field `format_version` at {line}:{column})")
    }
}
