//! flyteinfra's plans: the diff of desired resources against state and the cloud, the
//! [`Plan`] model it produces, its text and JSON renderings, and saved plan files.
//!
//! This crate decides *what* apply will do and explains *why*; it never calls a cloud,
//! never writes state and never prints. Refreshing actual attributes, applying the plan
//! and showing the rendered text are left to the binary; resource schemas and the graph
//! come from `flyteinfra-core`, the state document from `flyteinfra-state`.
//!
//! The model ([`Plan`], [`ResourceChange`], [`Action`], [`Reason`]) is kept apart from
//! its display ([`render_text`], [`render_json`]): renderers read only the model, and
//! they redact every sensitive value. Saved plans ([`save`], [`load`]) are a third,
//! separately versioned format,
//! checked on load ([`decode`]) so that a corrupt or hand-edited plan file is one located
//! error, never a panic in apply.

pub mod contents;
mod diff;
mod error;
mod json;
mod plan;
mod planfile;
#[cfg(test)]
mod prop_tests;
mod render;
mod serde_planned;

#[cfg(test)]
mod testutil;

pub use diff::{PlanInput, deletion_protected, plan};
pub use error::PlanError;
pub use json::{PLAN_JSON_SCHEMA, PlanJson, render_json};
pub use plan::{Action, FORMAT_VERSION, FieldChange, Note, Plan, Reason, ResourceChange, Summary};
pub use planfile::{
    PLANFILE_FORMAT_VERSION, SavedPlan, Target, decode, decode_for, load, load_for, save,
};
pub use render::render_text;
