//! Request builders for provider tests: one resource at a fixed test address, with
//! progress reported nowhere.

use std::time::SystemTime;

use crate::{
    Address, Attributes, ContentsRequest, CreateRequest, DeleteRequest, FindRequest, Progress,
    ReadRequest, UpdateRequest, WaitRequest,
};

fn addr(t: &str) -> Address {
    Address::new(t, "test")
}

/// A create of type `t`.
pub fn create(t: &str, inputs: &Attributes, token: &str) -> CreateRequest {
    CreateRequest {
        address: addr(t),
        inputs: inputs.clone(),
        token: token.to_string(),
        fresh: false,
        sent_at: Some(SystemTime::now()),
        progress: Progress::none(addr(t)),
    }
}

/// A read with no prior inputs (an import).
pub fn read(t: &str, id: &str) -> ReadRequest {
    ReadRequest {
        address: addr(t),
        id: id.to_string(),
        prior_inputs: Attributes::new(),
        prior_attributes: Attributes::new(),
    }
}

/// A refresh: the read knows the inputs last applied.
pub fn refresh(t: &str, id: &str, prior_inputs: &Attributes) -> ReadRequest {
    ReadRequest {
        prior_inputs: prior_inputs.clone(),
        ..read(t, id)
    }
}

/// A find by token.
pub fn find(t: &str, inputs: &Attributes, token: &str) -> FindRequest {
    FindRequest {
        address: addr(t),
        inputs: inputs.clone(),
        token: token.to_string(),
        sent_at: Some(SystemTime::now()),
    }
}

/// An update of the `changed` fields.
pub fn update(
    t: &str,
    id: &str,
    prior: &Attributes,
    inputs: &Attributes,
    changed: &[&str],
) -> UpdateRequest {
    UpdateRequest {
        address: addr(t),
        id: id.to_string(),
        prior: prior.clone(),
        inputs: inputs.clone(),
        changed: changed.iter().map(|s| s.to_string()).collect(),
        progress: Progress::none(addr(t)),
    }
}

/// A delete.
pub fn delete(t: &str, id: &str, attributes: &Attributes) -> DeleteRequest {
    DeleteRequest {
        address: addr(t),
        id: id.to_string(),
        attributes: attributes.clone(),
        force: false,
        progress: Progress::none(addr(t)),
    }
}

/// A contents probe.
pub fn contents(t: &str, id: &str, attributes: &Attributes) -> ContentsRequest {
    ContentsRequest {
        address: addr(t),
        id: id.to_string(),
        attributes: attributes.clone(),
    }
}

/// A wait for a create or delete.
pub fn wait(t: &str, id: &str, inputs: &Attributes) -> WaitRequest {
    WaitRequest {
        address: addr(t),
        id: id.to_string(),
        inputs: inputs.clone(),
        progress: Progress::none(addr(t)),
    }
}
