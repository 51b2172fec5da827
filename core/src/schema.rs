//! Resource schemas: which fields a resource type has and how the engine treats each.

use std::time::Duration;

/// How the engine treats one field.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Flags {
    /// Set by the user (through the blueprint). Inputs are diffed.
    pub input: bool,
    /// Must be present among the desired attributes.
    pub required: bool,
    /// Reported by the cloud after create; shown as `(known after apply)` until then.
    pub computed: bool,
    /// A change cannot be made in place: the resource is replaced.
    pub force_new: bool,
    /// A secret: redacted in every output.
    pub sensitive: bool,
    /// The cloud may change it on its own (e.g. an RDS minor version when only the
    /// major is pinned). Drift in it is ignored: only a change of the *desired* value
    /// against the last applied one produces a diff.
    pub server_managed: bool,
}

/// One field of a resource type.
#[derive(Clone, Debug)]
pub struct Field {
    /// The attribute name.
    pub name: &'static str,
    /// How the engine treats it.
    pub flags: Flags,
    /// One line for docs and `--help`.
    pub doc: &'static str,
}

impl Field {
    /// An optional input.
    pub const fn input(name: &'static str, doc: &'static str) -> Self {
        Field {
            name,
            doc,
            flags: Flags {
                input: true,
                required: false,
                computed: false,
                force_new: false,
                sensitive: false,
                server_managed: false,
            },
        }
    }

    /// A value computed by the cloud.
    pub const fn computed(name: &'static str, doc: &'static str) -> Self {
        Field {
            name,
            doc,
            flags: Flags {
                input: false,
                required: false,
                computed: true,
                force_new: false,
                sensitive: false,
                server_managed: false,
            },
        }
    }

    /// Marks the field required.
    pub const fn required(mut self) -> Self {
        self.flags.required = true;
        self
    }

    /// Marks the field force-new.
    pub const fn force_new(mut self) -> Self {
        self.flags.force_new = true;
        self
    }

    /// Marks the field sensitive.
    pub const fn sensitive(mut self) -> Self {
        self.flags.sensitive = true;
        self
    }

    /// Marks the field server-managed.
    pub const fn server_managed(mut self) -> Self {
        self.flags.server_managed = true;
        self
    }
}

/// What a resource type looks like to the engine.
#[derive(Clone, Debug)]
pub struct Schema {
    /// The type name used in addresses (`aws_s3_bucket`).
    pub type_name: &'static str,
    /// One paragraph for docs.
    pub doc: &'static str,
    /// Every field.
    pub fields: Vec<Field>,
    /// Deleting or replacing it destroys user data (databases, buckets): plans flag it.
    pub holds_data: bool,
    /// How long a create usually takes; the walker starts long chains first.
    pub expected_create: Duration,
    /// A boolean input that, while `true`, forbids deletion (`destroy` refuses and names it).
    pub deletion_protection: Option<&'static str>,
}

impl Schema {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether `name` is sensitive (unknown fields are treated as not sensitive).
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.field(name).is_some_and(|f| f.flags.sensitive)
    }

    /// Marks the values of this type's sensitive fields in `attrs` as secrets.
    pub fn mark_sensitive(&self, attrs: &mut crate::Attributes) {
        for f in self.fields.iter().filter(|f| f.flags.sensitive) {
            if let Some(v) = attrs.get_mut(f.name)
                && !matches!(v, crate::Value::Secret(_))
            {
                *v = std::mem::replace(v, crate::Value::Null).into_secret();
            }
        }
    }
}

/// What every provider's registry must hold to, as a list of problems (empty: none): type
/// names unique and starting with `prefix`, a doc on every type and field, a computed `id`,
/// and a deletion-protection setting (if any) that is an input. One check for all clouds,
/// so each provider's registry test is one line.
pub fn schema_problems(schemas: &[Schema], prefix: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in schemas {
        let t = s.type_name;
        if !seen.insert(t) {
            problems.push(format!("`{t}` is registered twice"));
        }
        if !t.starts_with(prefix) {
            problems.push(format!("`{t}` does not start with `{prefix}`"));
        }
        if s.doc.is_empty() {
            problems.push(format!("`{t}` has no doc"));
        }
        for f in s.fields.iter().filter(|f| f.doc.is_empty()) {
            problems.push(format!("`{t}.{}` has no doc", f.name));
        }
        if !s.field("id").is_some_and(|f| f.flags.computed) {
            problems.push(format!("`{t}` has no computed `id`"));
        }
        if let Some(p) = s.deletion_protection
            && !s.field(p).is_some_and(|f| f.flags.input)
        {
            problems.push(format!("`{t}`'s deletion protection `{p}` is not an input"));
        }
    }
    problems
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn every_kind_of_problem_is_named() {
        let good = Schema {
            type_name: "x_thing",
            doc: "A thing.",
            fields: vec![
                Field::computed("id", "The id."),
                Field::input("protected", "Protection."),
            ],
            holds_data: false,
            expected_create: Duration::ZERO,
            deletion_protection: Some("protected"),
        };
        assert!(schema_problems(std::slice::from_ref(&good), "x_").is_empty());
        let bad = Schema {
            type_name: "y_thing",
            doc: "",
            fields: vec![Field::input("id", "")],
            deletion_protection: Some("missing"),
            ..good.clone()
        };
        let got = schema_problems(&[good.clone(), good, bad], "x_");
        assert_eq!(
            got,
            [
                "`x_thing` is registered twice",
                "`y_thing` does not start with `x_`",
                "`y_thing` has no doc",
                "`y_thing.id` has no doc",
                "`y_thing` has no computed `id`",
                "`y_thing`'s deletion protection `missing` is not an input",
            ]
        );
    }
}
