//! The usual Azure credential chain, assembled from `azure_identity`'s credential types
//! (its 1.x releases have no ready-made default chain): an environment service principal,
//! workload identity, managed identity, then the Azure CLI. The first that yields a token
//! is kept for the rest of the run.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential,
    WorkloadIdentityCredential,
};

/// Tries each source in order; remembers the first that works.
pub struct ChainCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: Mutex<Option<usize>>,
}

impl std::fmt::Debug for ChainCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|(n, _)| *n).collect();
        f.debug_struct("ChainCredential")
            .field("sources", &names)
            .finish_non_exhaustive()
    }
}

impl ChainCredential {
    /// The chain for this process's environment. Sources whose settings are absent
    /// (no `AZURE_CLIENT_SECRET`, no `AZURE_FEDERATED_TOKEN_FILE`) are left out, so the
    /// error of an empty chain names what was tried.
    pub fn from_env() -> ChainCredential {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        if let (Some(tenant), Some(client), Some(secret)) = (
            var("AZURE_TENANT_ID"),
            var("AZURE_CLIENT_ID"),
            var("AZURE_CLIENT_SECRET"),
        ) && let Ok(c) = ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)
        {
            sources.push(("environment service principal", c));
        }
        if var("AZURE_FEDERATED_TOKEN_FILE").is_some()
            && let Ok(c) = WorkloadIdentityCredential::new(None)
        {
            sources.push(("workload identity", c));
        }
        if let Ok(c) = ManagedIdentityCredential::new(None) {
            sources.push(("managed identity", c));
        }
        if let Ok(c) = AzureCliCredential::new(None) {
            sources.push(("Azure CLI (`az login`)", c));
        }
        ChainCredential {
            sources,
            chosen: Mutex::new(None),
        }
    }
}

#[async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = *self.chosen.lock().expect("credential choice");
        if let Some(i) = chosen {
            return self.sources[i].1.get_token(scopes, options).await;
        }
        let mut tried = Vec::new();
        for (i, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(t) => {
                    *self.chosen.lock().expect("credential choice") = Some(i);
                    return Ok(t);
                }
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no Azure credential worked ({}). Run `az login`, or set AZURE_TENANT_ID, \
                 AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
                if tried.is_empty() {
                    "no source is available here".to_string()
                } else {
                    tried.join("; ")
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use azure_core::time::{Duration, OffsetDateTime};

    /// A source that yields `token-of-{name}` or fails, counting the times it is asked.
    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        works: bool,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl TokenCredential for Fake {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.works {
                let expires = OffsetDateTime::now_utc() + Duration::hours(1);
                Ok(AccessToken::new(format!("token-of-{}", self.name), expires))
            } else {
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    format!("{} is not set up", self.name),
                ))
            }
        }
    }

    fn fake(name: &'static str, works: bool) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            works,
            asked: AtomicUsize::new(0),
        })
    }

    /// A chain of `sources`, in order (the fields are private to this module).
    fn chain(sources: &[&Arc<Fake>]) -> ChainCredential {
        ChainCredential {
            sources: sources
                .iter()
                .map(|f| (f.name, Arc::clone(*f) as Arc<dyn TokenCredential>))
                .collect(),
            chosen: Mutex::new(None),
        }
    }

    fn asked(f: &Fake) -> usize {
        f.asked.load(Ordering::SeqCst)
    }

    const SCOPES: &[&str] = &["https://management.azure.com/.default"];

    #[tokio::test]
    async fn the_first_source_that_works_is_kept() {
        let (a, b, c) = (fake("a", false), fake("b", true), fake("c", true));
        let chain = chain(&[&a, &b, &c]);
        let t = chain.get_token(SCOPES, None).await.unwrap();
        assert_eq!(t.token.secret(), "token-of-b");
        assert_eq!((asked(&a), asked(&b), asked(&c)), (1, 1, 0));
        let t = chain.get_token(SCOPES, None).await.unwrap();
        assert_eq!(t.token.secret(), "token-of-b");
        assert_eq!(
            (asked(&a), asked(&b), asked(&c)),
            (1, 2, 0),
            "later calls go straight to the chosen source"
        );
    }

    #[tokio::test]
    async fn when_all_fail_the_error_names_every_source() {
        let (a, b) = (
            fake("workload identity", false),
            fake("managed identity", false),
        );
        let chain = chain(&[&a, &b]);
        let e = chain.get_token(SCOPES, None).await.unwrap_err();
        assert_eq!(*e.kind(), azure_core::error::ErrorKind::Credential);
        let text = e.to_string();
        assert!(
            text.contains("workload identity: workload identity is not set up"),
            "{text}"
        );
        assert!(
            text.contains("managed identity: managed identity is not set up"),
            "{text}"
        );
        assert!(text.contains("az login"), "{text}");
        // Nothing was chosen: the next call tries them all again.
        chain.get_token(SCOPES, None).await.unwrap_err();
        assert_eq!((asked(&a), asked(&b)), (2, 2));
    }
}
