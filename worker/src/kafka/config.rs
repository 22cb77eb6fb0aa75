//! librdkafka client properties: bootstrap servers, pass-through properties, and secret
//! properties whose values are read from the environment or a mounted file (never from the
//! spec in clear text).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rivulet_api::spec::SecretRef;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("kafka property `{property}`: environment variable {var} is not set")]
    MissingEnv { property: String, var: String },
    #[error("kafka property `{property}`: cannot read {path}: {source}")]
    File {
        property: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Builds a client config from bootstrap servers and the spec's properties.
pub fn client_config(
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretRef>,
) -> Result<ClientConfig, ConfigError> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        cfg.set(k, v);
    }
    for (k, r) in secrets {
        cfg.set(k, resolve_secret(k, r)?);
    }
    Ok(cfg)
}

/// Reads one secret value; trailing newlines of files are dropped.
pub fn resolve_secret(property: &str, r: &SecretRef) -> Result<String, ConfigError> {
    match r {
        SecretRef::Env(var) => std::env::var(var).map_err(|_| ConfigError::MissingEnv {
            property: property.to_string(),
            var: var.clone(),
        }),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|source| ConfigError::File {
                property: property.to_string(),
                path: path.clone(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Managed clusters need TLS and SASL; this proves they are compiled into librdkafka.
    #[test]
    fn librdkafka_has_tls_and_sasl() {
        let native = ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        for f in ["ssl", "sasl_plain", "sasl_scram", "sasl_gssapi", "zstd"] {
            assert!(
                features.split(',').any(|x| x == f),
                "librdkafka lacks {f}: {features}"
            );
        }
    }

    #[test]
    fn secrets_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::env::set_var("RIVULET_TEST_SASL_USER", "alice");
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "sasl.username".to_string(),
            SecretRef::Env("RIVULET_TEST_SASL_USER".into()),
        );
        secrets.insert(
            "sasl.password".to_string(),
            SecretRef::File(f.display().to_string()),
        );
        let mut props = BTreeMap::new();
        props.insert("security.protocol".to_string(), "SASL_SSL".to_string());
        let cfg = client_config("h:1", &props, &secrets).unwrap();
        assert_eq!(cfg.get("sasl.username"), Some("alice"));
        assert_eq!(cfg.get("sasl.password"), Some("s3cret"));
        assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
        let missing = SecretRef::Env("RIVULET_TEST_NOT_SET_ANYWHERE".into());
        let err = resolve_secret("sasl.password", &missing).unwrap_err();
        assert!(err.to_string().contains("sasl.password"));
    }
}
