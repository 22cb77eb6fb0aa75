//! The Kubernetes API access the operator's code needs, in one place: every API group,
//! resource and verb it calls, and where. The Helm chart grants exactly these (a test
//! compares them in both directions), and the tests' fake API servers refuse any request
//! they do not allow, so a new call without its permission fails a test, not a cluster.
//!
//! A server-side apply is a `patch`, and a `create` too when the object does not exist yet.

/// Where a permission is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// In every namespace whose StreamJobs the operator runs.
    Jobs,
    /// In the operator's own namespace (the leader Lease).
    Operator,
}

/// Which part of the operator uses a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum User {
    /// The reconciler: one job's reads, applies, status, events.
    Reconciler,
    /// The runner: the controllers' watches and the leader election.
    Runner,
}

/// Verbs on one resource of one API group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The resource, or `resource/subresource`.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    pub user: User,
    /// Needed only when the operator gives jobs NetworkPolicies.
    pub network_policy: bool,
}

const fn p(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    scope: Scope,
    user: User,
) -> Permission {
    Permission {
        group,
        resource,
        verbs,
        scope,
        user,
        network_policy: false,
    }
}

/// Everything the operator calls.
pub const PERMISSIONS: &[Permission] = &[
    // The controllers watch StreamJobs and the StatefulSets they own.
    p(
        "rivulet.dev",
        "streamjobs",
        &["list", "watch"],
        Scope::Jobs,
        User::Runner,
    ),
    p(
        "apps",
        "statefulsets",
        &["list", "watch"],
        Scope::Jobs,
        User::Runner,
    ),
    // The finalizer (a merge patch), and the status (server-side apply).
    p(
        "rivulet.dev",
        "streamjobs",
        &["patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    p(
        "rivulet.dev",
        "streamjobs/status",
        &["patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    // The objects of a deployment, applied; the StatefulSet read and scaled to zero.
    p(
        "apps",
        "statefulsets",
        &["get", "create", "patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    p(
        "apps",
        "statefulsets/scale",
        &["patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    p(
        "",
        "configmaps",
        &["create", "patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    p(
        "",
        "services",
        &["create", "patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    p(
        "policy",
        "poddisruptionbudgets",
        &["create", "patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    // The control-token Secret (read, or created), and the storage credentials (read).
    p(
        "",
        "secrets",
        &["get", "create"],
        Scope::Jobs,
        User::Reconciler,
    ),
    // The workers' pods: readiness, addresses, crash loops.
    p("", "pods", &["list"], Scope::Jobs, User::Reconciler),
    // Events, and repeats of one (its series is patched).
    p(
        "events.k8s.io",
        "events",
        &["create", "patch"],
        Scope::Jobs,
        User::Reconciler,
    ),
    // Each job's NetworkPolicy, applied when the operator is asked for them.
    Permission {
        network_policy: true,
        ..p(
            "networking.k8s.io",
            "networkpolicies",
            &["create", "patch"],
            Scope::Jobs,
            User::Reconciler,
        )
    },
    // The leader Lease.
    p(
        "coordination.k8s.io",
        "leases",
        &["get", "create", "patch"],
        Scope::Operator,
        User::Runner,
    ),
];

/// Whether `verb` on `group`/`resource` is among [`PERMISSIONS`].
pub fn allowed(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS
        .iter()
        .any(|p| p.group == group && p.resource == resource && p.verbs.contains(&verb))
}

/// The verbs each (group, resource) needs in `scope`, merged over every user and sorted:
/// what a Role or ClusterRole grants (with `network_policies`, when the operator makes them).
pub fn rules(
    scope: Scope,
    network_policies: bool,
) -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    let mut out: std::collections::BTreeMap<(&str, &str), Vec<&str>> = Default::default();
    for p in PERMISSIONS
        .iter()
        .filter(|p| p.scope == scope && (network_policies || !p.network_policy))
    {
        let verbs = out.entry((p.group, p.resource)).or_default();
        verbs.extend(p.verbs.iter().copied());
        verbs.sort_unstable();
        verbs.dedup();
    }
    out.into_iter().map(|((g, r), v)| (g, r, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_merge_the_users_verbs() {
        let jobs = rules(Scope::Jobs, false);
        assert!(!jobs.iter().any(|(_, r, _)| *r == "networkpolicies"));
        assert!(rules(Scope::Jobs, true)
            .iter()
            .any(|(g, r, _)| *g == "networking.k8s.io" && *r == "networkpolicies"));
        let sts = jobs
            .iter()
            .find(|(g, r, _)| *g == "apps" && *r == "statefulsets")
            .expect("statefulsets");
        assert_eq!(sts.2, ["create", "get", "list", "patch", "watch"]);
        assert_eq!(
            rules(Scope::Operator, true),
            [(
                "coordination.k8s.io",
                "leases",
                vec!["create", "get", "patch"]
            )]
        );
        assert!(allowed("", "pods", "list"));
        assert!(!allowed("", "pods", "delete"));
    }
}
