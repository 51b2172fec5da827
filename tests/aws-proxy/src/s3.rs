//! S3's regions, which moto does not enforce.
//!
//! A bucket lives in the region it was created in (`CreateBucketConfiguration`'s
//! `LocationConstraint`, us-east-1 without one). On AWS, a request for the bucket signed for
//! another region is refused with `301 PermanentRedirect` naming the bucket's region in
//! `x-amz-bucket-region`; moto answers it as if the bucket were everywhere. The proxy
//! remembers the region of each bucket created through it and refuses such requests the
//! same way, so the provider's wrong-region handling runs against the real behaviour.
//! HeadBucket, GetBucketLocation and ListBuckets answer from any region, as on AWS.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Message, Request, lock, tag_text};

/// The region of each bucket created through this proxy.
#[derive(Default)]
pub(crate) struct BucketRegions(Mutex<HashMap<String, String>>);

/// Whether the answer is a 2xx.
fn ok(resp: &Message) -> bool {
    let head = String::from_utf8_lossy(&resp.head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    status.is_some_and(|s| (200..300).contains(&s))
}

/// The bucket a path-style S3 request addresses.
fn bucket(req: &Request) -> Option<&str> {
    req.path().split('/').find(|s| !s.is_empty())
}

/// The region a request is signed for (SigV4 credential scope `key/date/region/...`).
fn signing_region(req: &Request) -> Option<&str> {
    let auth = req.header("authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(2)
}

impl BucketRegions {
    /// Records the region of a bucket the answer says was created.
    pub(crate) fn created(&self, op: &str, req: &Request, resp: &Message) {
        if op != "CreateBucket" || !ok(resp) {
            return;
        }
        let Some(name) = bucket(req) else { return };
        let body = String::from_utf8_lossy(&req.body);
        let region = tag_text(&body, "LocationConstraint").unwrap_or("us-east-1");
        lock(&self.0).insert(name.to_string(), region.to_string());
    }

    /// Forgets a bucket the answer says was deleted.
    pub(crate) fn deleted(&self, op: &str, req: &Request, resp: &Message) {
        if op == "DeleteBucket"
            && ok(resp)
            && let Some(name) = bucket(req)
        {
            lock(&self.0).remove(name);
        }
    }

    /// AWS's refusal of a request for a known bucket signed for another region.
    pub(crate) fn redirect(&self, op: &str, req: &Request) -> Option<Vec<u8>> {
        if req.service() != Some("s3")
            || matches!(
                op,
                "HeadBucket" | "GetBucketLocation" | "CreateBucket" | "ListBuckets"
            )
        {
            return None;
        }
        let name = bucket(req)?;
        let home = lock(&self.0).get(name).cloned()?;
        if signing_region(req)? == home {
            return None;
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>\
             <Message>The bucket you are attempting to access must be addressed using the \
             specified endpoint. Please send all future requests to this endpoint.</Message>\
             <Bucket>{name}</Bucket><Endpoint>{name}.s3.{home}.amazonaws.com</Endpoint></Error>"
        );
        Some(
            format!(
                "HTTP/1.1 301 Moved Permanently\r\ncontent-type: application/xml\r\n\
                 x-amz-bucket-region: {home}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}
