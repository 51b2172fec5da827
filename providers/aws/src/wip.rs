//! TEMPORARY while the resource types are written; removed before commit.
#![allow(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use flyteinfra_core::*;

struct Wip(Schema);

pub fn unimplemented(schema: Schema) -> Arc<dyn ResourceType> {
    Arc::new(Wip(schema))
}

fn no() -> ProviderError {
    ProviderError::new(ErrorKind::Permanent, "not implemented yet")
}

#[async_trait]
impl ResourceType for Wip {
    fn schema(&self) -> &Schema {
        &self.0
    }
    async fn read(&self, _: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Err(no())
    }
    async fn find(&self, _: FindRequest) -> Result<FindResponse, ProviderError> {
        Err(no())
    }
    async fn create(&self, _: CreateRequest) -> Result<CreateResponse, ProviderError> {
        Err(no())
    }
    async fn update(&self, _: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        Err(no())
    }
    async fn delete(&self, _: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        Err(no())
    }
}
