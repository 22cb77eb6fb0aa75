//! What RBAC allows a request the operator sends to its (fake) API server: the request's
//! API group, resource and verb, checked against `rivulet_operator::rbac::PERMISSIONS`.

#![allow(dead_code)]

use std::collections::BTreeSet;

/// (group, resource, verb), as RBAC rules name them.
pub type Access = (String, String, String);

/// The accesses a request needs: a `GET` of one object is `get`, of a collection `list`
/// (or `watch`), `POST` is `create`, `PATCH` is `patch`, and a server-side apply of a
/// whole object also `create` (it creates the object when it does not exist).
pub fn needs(method: &str, path: &str, watch: bool, apply: bool) -> Vec<Access> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a Kubernetes API path: {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => panic!("not a resource path: {path}"),
    };
    let verbs: Vec<&str> = match (method, named) {
        ("GET", true) => vec!["get"],
        ("GET", false) if watch => vec!["watch"],
        ("GET", false) => vec!["list"],
        ("POST", _) => vec!["create"],
        ("PATCH", _) if apply && !resource.contains('/') => vec!["patch", "create"],
        ("PATCH", _) => vec!["patch"],
        ("PUT", _) => vec!["update"],
        ("DELETE", _) => vec!["delete"],
        _ => panic!("unexpected method {method} {path}"),
    };
    verbs
        .into_iter()
        .map(|v| (group.to_string(), resource.clone(), v.to_string()))
        .collect()
}

/// Fails the test unless the operator's permissions allow `access`.
pub fn check(access: &[Access], request: &str) {
    for (g, r, v) in access {
        assert!(
            rivulet_operator::rbac::allowed(g, r, v),
            "{request} needs `{v}` on {g:?}/{r}, which rivulet_operator::rbac::PERMISSIONS \
             (and so the chart's RBAC) does not grant"
        );
    }
}

/// Every access `user` is granted, one per verb.
pub fn granted(user: rivulet_operator::rbac::User) -> BTreeSet<Access> {
    rivulet_operator::rbac::PERMISSIONS
        .iter()
        .filter(|p| p.user == user)
        .flat_map(|p| {
            p.verbs
                .iter()
                .map(|v| (p.group.to_string(), p.resource.to_string(), v.to_string()))
        })
        .collect()
}
