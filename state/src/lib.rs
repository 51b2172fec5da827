//! flyteinfra's state: the document, its on-disk format, and the backends that store it
//! with locks.

mod document;

pub use document::{
    FORMAT_VERSION, Intent, Operation, Output, ResourceState, StateDoc, Status, new_lineage,
};
