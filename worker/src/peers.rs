//! The addresses of a job's workers: an explicit list, or a pattern a StatefulSet's
//! headless service gives (`<job>-{i}.<service>:<port>`).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeersError {
    #[error("{given} peer addresses for parallelism {parallelism}")]
    Count { given: usize, parallelism: u32 },
    #[error("peer address {0:?} is not host:port")]
    Address(String),
}

/// Expands `spec` (comma-separated `host:port` entries, or one entry containing `{i}`)
/// into one address per worker ordinal.
pub fn expand(spec: &str, parallelism: u32) -> Result<Vec<String>, PeersError> {
    let entries: Vec<String> = if spec.contains("{i}") && !spec.contains(',') {
        (0..parallelism)
            .map(|i| spec.trim().replace("{i}", &i.to_string()))
            .collect()
    } else {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    if entries.len() != parallelism as usize {
        return Err(PeersError::Count {
            given: entries.len(),
            parallelism,
        });
    }
    for e in &entries {
        let ok = e
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(PeersError::Address(e.clone()));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_and_a_pattern() {
        assert_eq!(
            expand("127.0.0.1:7001, 127.0.0.1:7002", 2).unwrap(),
            vec!["127.0.0.1:7001", "127.0.0.1:7002"]
        );
        assert_eq!(
            expand("clicks-{i}.clicks.ns.svc:6123", 3).unwrap(),
            vec![
                "clicks-0.clicks.ns.svc:6123",
                "clicks-1.clicks.ns.svc:6123",
                "clicks-2.clicks.ns.svc:6123"
            ]
        );
    }

    #[test]
    fn wrong_counts_and_addresses_are_refused() {
        assert_eq!(
            expand("a:1", 2),
            Err(PeersError::Count {
                given: 1,
                parallelism: 2
            })
        );
        assert_eq!(expand("a:1,b", 2), Err(PeersError::Address("b".into())));
        assert_eq!(expand("a:x", 1), Err(PeersError::Address("a:x".into())));
    }
}
