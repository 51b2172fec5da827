//! What an ARM path names. Paths are case-insensitive and arbitrarily deep
//! (`…/providers/{ns}/{type}/{name}/{childType}/{childName}`), so they are parsed here
//! rather than by the router.

use crate::http::canon;

/// A resource under a resource group: `providers/{ns}` then `type/name` pairs.
#[derive(Clone, Debug)]
pub(crate) struct Res {
    pub sub: String,
    pub rg: String,
    /// The namespace, canonically cased (`Microsoft.Network`).
    pub ns: String,
    /// `(type, name)` pairs, types canonically cased, names as given.
    pub types: Vec<(String, String)>,
}

impl Res {
    /// The resource id, with canonical casing for the keywords.
    pub fn id(&self) -> String {
        let mut id = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.sub, self.rg, self.ns
        );
        for (t, n) in &self.types {
            id.push_str(&format!("/{t}/{n}"));
        }
        id
    }

    /// The lowercased id the store is keyed by.
    pub fn key(&self) -> String {
        self.id().to_ascii_lowercase()
    }

    /// `microsoft.network/virtualnetworks/subnets`: what the per-type rules key on.
    pub fn type_key(&self) -> String {
        let mut k = self.ns.clone();
        for (t, _) in &self.types {
            k.push('/');
            k.push_str(t);
        }
        k.to_ascii_lowercase()
    }

    /// The resource's own name.
    pub fn name(&self) -> &str {
        self.types.last().map_or("", |(_, n)| n.as_str())
    }

    /// The parent resource of a child resource.
    pub fn parent(&self) -> Option<Res> {
        (self.types.len() > 1).then(|| Res {
            types: self.types[..self.types.len() - 1].to_vec(),
            ..self.clone()
        })
    }

    /// The top-level resource this one is or belongs to.
    pub fn top(&self) -> Res {
        Res {
            types: self.types[..1].to_vec(),
            ..self.clone()
        }
    }

    /// The lowercased id of its resource group.
    pub fn group_key(&self) -> String {
        group_id(&self.sub, &self.rg).to_ascii_lowercase()
    }
}

/// A resource group's id.
pub(crate) fn group_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

/// What a path under `/subscriptions/{sub}` names.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// `/subscriptions/{sub}`.
    Subscription,
    /// `…/locations`.
    Locations,
    /// `…/providers/{ns}`.
    Provider(String),
    /// `…/providers/{ns}/register`.
    Register(String),
    /// An operation's `Azure-AsyncOperation` URL.
    OpStatus(String),
    /// An operation's `Location` URL.
    OpResult(String),
    /// `…/resourceGroups/{rg}`.
    Group(String),
    /// `…/resourceGroups/{rg}/resources`.
    GroupResources(String),
    /// `{scope}/providers/Microsoft.Authorization/locks[/{name}]`; the scope is a
    /// subscription, group or resource.
    Locks(Box<Target>, Option<String>),
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`; the scope
    /// is a subscription, group or resource (child resources included).
    RoleAssignments(Box<Target>, Option<String>),
    /// A resource under a group.
    Resource(Res),
    /// `{resource}/{childType}`: the resource's children of one type (a list).
    Collection(Res, String),
}

impl Target {
    /// The id of a lock scope (subscription, group or resource).
    pub fn scope_id(&self, sub: &str) -> Option<String> {
        match self {
            Target::Subscription => Some(format!("/subscriptions/{sub}")),
            Target::Group(rg) => Some(group_id(sub, rg)),
            Target::Resource(r) => Some(r.id()),
            _ => None,
        }
    }
}

/// Parses the segments after `/subscriptions/{sub}`.
pub(crate) fn parse(sub: &str, segs: &[&str]) -> Option<Target> {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let n = l.len();
    const LOCKS: [&str; 3] = ["providers", "microsoft.authorization", "locks"];
    const ASSIGNMENTS: [&str; 3] = ["providers", "microsoft.authorization", "roleassignments"];
    if n >= 3 && l[n - 3..] == LOCKS {
        return lock_scope(sub, &segs[..n - 3]).map(|s| Target::Locks(Box::new(s), None));
    }
    if n >= 4 && l[n - 4..n - 1] == LOCKS {
        let name = segs[n - 1].to_string();
        return lock_scope(sub, &segs[..n - 4]).map(|s| Target::Locks(Box::new(s), Some(name)));
    }
    if n >= 3 && l[n - 3..] == ASSIGNMENTS {
        return lock_scope(sub, &segs[..n - 3]).map(|s| Target::RoleAssignments(Box::new(s), None));
    }
    if n >= 4 && l[n - 4..n - 1] == ASSIGNMENTS {
        let name = segs[n - 1].to_string();
        return lock_scope(sub, &segs[..n - 4])
            .map(|s| Target::RoleAssignments(Box::new(s), Some(name)));
    }
    let t = match l.as_slice() {
        [] => Target::Subscription,
        ["locations"] => Target::Locations,
        ["operationresults", _] => Target::OpResult(segs[1].to_string()),
        ["providers", _] => Target::Provider(canon(segs[1])),
        ["providers", _, "register"] => Target::Register(canon(segs[1])),
        ["providers", _, .., kind, _] => {
            let id = segs[n - 1].to_string();
            match *kind {
                // AKS reports its operations under `…/locations/{loc}/operations/{id}`.
                "operationstatuses" | "privatednsoperationstatuses" | "operations" => {
                    Target::OpStatus(id)
                }
                "operationresults" | "privatednsoperationresults" | "asyncoperations" => {
                    Target::OpResult(id)
                }
                _ => return None,
            }
        }
        ["resourcegroups", _] => Target::Group(segs[1].to_string()),
        ["resourcegroups", _, "resources"] => Target::GroupResources(segs[1].to_string()),
        ["resourcegroups", _, "providers", _, rest @ ..]
            if !rest.is_empty() && rest.len() % 2 == 0 =>
        {
            Target::Resource(Res {
                sub: sub.to_string(),
                rg: segs[1].to_string(),
                ns: canon(segs[3]),
                types: segs[4..]
                    .chunks(2)
                    .map(|p| (canon(p[0]), p[1].to_string()))
                    .collect(),
            })
        }
        ["resourcegroups", _, "providers", _, rest @ ..]
            if rest.len() >= 3 && rest.len() % 2 == 1 =>
        {
            Target::Collection(
                Res {
                    sub: sub.to_string(),
                    rg: segs[1].to_string(),
                    ns: canon(segs[3]),
                    types: segs[4..n - 1]
                        .chunks(2)
                        .map(|p| (canon(p[0]), p[1].to_string()))
                        .collect(),
                },
                canon(segs[n - 1]),
            )
        }
        _ => return None,
    };
    Some(t)
}

fn lock_scope(sub: &str, segs: &[&str]) -> Option<Target> {
    parse(sub, segs).filter(|t| t.scope_id(sub).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Option<Target> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        parse("s", &segs)
    }

    #[test]
    fn parses_nested_resources_case_insensitively() {
        let Some(Target::Resource(r)) =
            p("resourcegroups/rg/providers/microsoft.network/VIRTUALNETWORKS/v/subnets/a")
        else {
            panic!("not a resource");
        };
        assert_eq!(
            r.id(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
        );
        assert_eq!(r.type_key(), "microsoft.network/virtualnetworks/subnets");
        assert_eq!(r.parent().map(|p| p.name().to_string()), Some("v".into()));
    }

    #[test]
    fn parses_locks_at_every_scope() {
        let t = p(
            "resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/x/providers/Microsoft.Authorization/locks/l",
        );
        let Some(Target::Locks(scope, Some(name))) = t else {
            panic!("not a lock: {t:?}");
        };
        assert_eq!(name, "l");
        assert!(matches!(*scope, Target::Resource(_)));
        assert!(matches!(
            p("resourceGroups/rg/providers/Microsoft.Authorization/locks"),
            Some(Target::Locks(s, None)) if matches!(*s, Target::Group(_))
        ));
        assert!(p("providers/Microsoft.Authorization/locks/l").is_some());
        assert!(p("locations/x/providers/Microsoft.Authorization/locks/l").is_none());
    }

    #[test]
    fn parses_operation_urls() {
        assert!(matches!(
            p("providers/Microsoft.Network/locations/eastus/operationStatuses/o"),
            Some(Target::OpStatus(o)) if o == "o"
        ));
        assert!(matches!(
            p("providers/Microsoft.Network/privateDnsOperationResults/o"),
            Some(Target::OpResult(_))
        ));
        assert!(matches!(p("operationresults/o"), Some(Target::OpResult(_))));
        assert!(matches!(
            p("providers/Microsoft.Storage/locations/eastus/asyncoperations/o"),
            Some(Target::OpResult(o)) if o == "o"
        ));
        assert!(matches!(
            p("providers/Microsoft.ContainerService/locations/eastus/operations/o"),
            Some(Target::OpStatus(o)) if o == "o"
        ));
        assert!(p("resourceGroups/rg/providers/Microsoft.Network/virtualNetworks").is_none());
    }

    #[test]
    fn parses_role_assignments_at_every_scope() {
        let t = p(
            "resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/c/providers/Microsoft.Authorization/roleAssignments/g",
        );
        let Some(Target::RoleAssignments(scope, Some(name))) = t else {
            panic!("not a role assignment: {t:?}");
        };
        assert_eq!(name, "g");
        let Target::Resource(r) = *scope else {
            panic!("not a resource scope");
        };
        assert_eq!(r.types.len(), 3);
        assert!(matches!(
            p("providers/microsoft.authorization/ROLEASSIGNMENTS/g"),
            Some(Target::RoleAssignments(s, Some(_))) if matches!(*s, Target::Subscription)
        ));
        assert!(matches!(
            p("resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments"),
            Some(Target::RoleAssignments(s, None)) if matches!(*s, Target::Group(_))
        ));
        assert!(p("locations/x/providers/Microsoft.Authorization/roleAssignments/g").is_none());
    }

    #[test]
    fn parses_child_collections() {
        let t = p(
            "resourceGroups/rg/providers/microsoft.storage/storageaccounts/a/blobservices/default/CONTAINERS",
        );
        let Some(Target::Collection(parent, child)) = t else {
            panic!("not a collection: {t:?}");
        };
        assert_eq!(child, "containers");
        assert_eq!(
            parent.id(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default"
        );
    }
}
