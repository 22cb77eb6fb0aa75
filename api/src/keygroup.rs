//! Key groups: the unit of keyed state that moves between workers on rescale.
//!
//! A record's key is a list of field values. Its canonical bytes are, for each key field in
//! order, the value's text (strings as they are, numbers in their shortest decimal form,
//! `true`/`false`) preceded by its length as a little-endian `u32`. The key group is
//! `xxh3_64(canonical bytes, seed 0) % max_parallelism`.
//!
//! **This hash is fixed forever**: savepoints store state by key group, so changing it would
//! send restored keys to the wrong workers. `tests::hash_is_pinned` holds test vectors.
//!
//! Worker `i` of `n` owns the contiguous range `[ceil(i*K/n), ceil((i+1)*K/n))`.

use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64;

/// Appends one key field's text to canonical key bytes.
pub fn push_key_part(buf: &mut Vec<u8>, text: &[u8]) {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&text[..len as usize]);
}

/// Splits canonical key bytes back into the fields' texts; `None` if they are not canonical.
pub fn split_key(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        let len_bytes: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let part = bytes.get(4..4 + len)?;
        parts.push(part);
        bytes = &bytes[4 + len..];
    }
    Some(parts)
}

/// The stable 64-bit hash of canonical key bytes.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The key group of canonical key bytes, in `0..max_parallelism`.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (key_hash(key) % u64::from(max_parallelism.max(1))) as u32
}

/// The key groups worker `index` of `parallelism` owns, out of `max_parallelism`.
pub fn range_for_worker(index: u32, parallelism: u32, max_parallelism: u32) -> Range<u32> {
    let k = u64::from(max_parallelism);
    let n = u64::from(parallelism.max(1));
    let i = u64::from(index);
    let start = (i * k).div_ceil(n);
    let end = ((i + 1) * k).div_ceil(n);
    (start as u32)..(end.min(k) as u32)
}

/// The worker that owns key group `kg`.
pub fn worker_for_key_group(kg: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    let n = parallelism.max(1);
    // The owner is the largest i with ceil(i*K/n) <= kg, i.e. floor((kg*n + n - 1) / K)
    // clipped; searching keeps it obviously consistent with `range_for_worker`.
    let guess = ((u64::from(kg) * u64::from(n)) / u64::from(max_parallelism.max(1))) as u32;
    for i in guess.saturating_sub(1)..n {
        if range_for_worker(i, n, max_parallelism).contains(&kg) {
            return i;
        }
    }
    n - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for p in parts {
            push_key_part(&mut b, p.as_bytes());
        }
        b
    }

    /// Pinned forever: if this fails, the hash changed and savepoints would break.
    ///
    /// The values were cross-checked against the reference C implementation of XXH3
    /// (`xxhash.xxh3_64_intdigest` in Python's `xxhash` 4.1.0). The vectors cover each of
    /// XXH3's input-length code paths: 0, 4–8, 9–16, 17–128, 129–240 and over 240 bytes.
    #[test]
    fn hash_is_pinned() {
        assert_eq!(key(&["alice"]), b"\x05\x00\x00\x00alice".to_vec());
        // XXH3-64 of the empty input with seed 0: the algorithm's published test vector.
        assert_eq!(key_hash(&key(&[])), 0x2d06_8005_38d3_94c2_u64);

        let vectors: [(Vec<u8>, u64, u32, u32); 8] = [
            (key(&["alice"]), 0x632d_fd5f_fa4e_47b0, 48, 18352),
            (key(&["bob"]), 0xd5a7_25b1_c47d_57c2, 66, 22466),
            (key(&["42", "x"]), 0xf793_3d1b_3331_290b, 11, 10507),
            (key(&[""]), 0x48b2_c926_16fc_193d, 61, 6461),
            (key(&[]), 0x2d06_8005_38d3_94c2, 66, 5314),
            (
                key(&["h\u{e9}llo", "\u{1f980}"]),
                0x2038_24b1_d06a_9235,
                53,
                4661,
            ),
            (
                key(&["y".repeat(150).as_str()]),
                0x2bfd_fcec_fb15_8292,
                18,
                658,
            ),
            (
                key(&["x".repeat(300).as_str()]),
                0x06c3_12a5_b177_b361,
                97,
                13153,
            ),
        ];
        for (k, hash, kg_128, kg_32768) in vectors {
            assert_eq!(key_hash(&k), hash, "key {k:?}");
            assert_eq!(key_group(&k, 128), kg_128, "key {k:?}");
            assert_eq!(key_group(&k, 32768), kg_32768, "key {k:?}");
        }
    }

    #[test]
    fn split_roundtrips() {
        let k = key(&["a", "", "long value"]);
        let parts = split_key(&k).unwrap();
        assert_eq!(parts, vec![&b"a"[..], &b""[..], &b"long value"[..]]);
        assert!(split_key(&[1, 0, 0]).is_none());
    }

    #[test]
    fn ranges_cover_all_key_groups_exactly_once() {
        for k in [1u32, 7, 128, 1000] {
            for n in 1..=k.min(40) {
                let mut next = 0;
                for i in 0..n {
                    let r = range_for_worker(i, n, k);
                    assert_eq!(r.start, next, "k={k} n={n} i={i}");
                    assert!(r.end >= r.start);
                    for kg in r.clone() {
                        assert_eq!(worker_for_key_group(kg, n, k), i);
                    }
                    next = r.end;
                }
                assert_eq!(next, k);
            }
        }
    }

    #[test]
    fn flink_formula_examples() {
        assert_eq!(range_for_worker(0, 3, 128), 0..43);
        assert_eq!(range_for_worker(1, 3, 128), 43..86);
        assert_eq!(range_for_worker(2, 3, 128), 86..128);
    }
}
