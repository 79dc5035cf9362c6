//! The stable fuzzing harness shared by the fuzz targets. libFuzzer
//! (cargo-fuzz) needs a nightly compiler with sanitizer support, and this
//! project builds and tests on stable only, so each parser of outside
//! input has a proptest target instead: random inputs and mutations of a
//! valid seed (bit flips, truncations, insertions, splices), shrunk to a
//! minimal failing input when one fails. `scripts/test` runs a few hundred
//! cases each; `PAIRGATE_FUZZ_CASES=N` runs N, e.g.
//! `PAIRGATE_FUZZ_CASES=200000 cargo test --release -p pairgate-pki --test it fuzz`.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per target: `PAIRGATE_FUZZ_CASES`, else 256.
pub fn cases() -> u32 {
    std::env::var("PAIRGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A proptest configuration with [`cases`] cases and no persistence files.
pub fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Edit {
    /// XOR a byte.
    Flip(usize, u8),
    /// Cut at an offset.
    Truncate(usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Remove a range.
    Remove(usize, usize),
    /// Copy a range of the input elsewhere (repeats a length field's
    /// neighbourhood, nests structures).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Edit::Flip(i, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<usize>(), 1..64usize).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<usize>(), 1..64usize, any::<usize>()).prop_map(|(a, n, b)| Edit::Splice(a, n, b)),
    ]
}

/// Applies `edits` to `seed`.
pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for e in edits {
        let len = out.len().max(1);
        match e {
            Edit::Flip(i, b) => {
                if let Some(x) = out.get_mut(i % len) {
                    *x ^= b;
                }
            }
            Edit::Truncate(i) => out.truncate(i % len),
            Edit::Insert(i, bytes) => {
                let at = (i % len).min(out.len());
                out.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let from = (i % len).min(out.len());
                let to = from.saturating_add(*n).min(out.len());
                out.drain(from..to);
            }
            Edit::Splice(a, n, b) => {
                let from = (a % len).min(out.len());
                let to = from.saturating_add(*n).min(out.len());
                let piece: Vec<u8> = out.get(from..to).map(<[u8]>::to_vec).unwrap_or_default();
                let at = (b % len).min(out.len());
                out.splice(at..at, piece);
            }
        }
    }
    out
}

/// Inputs for a parser whose valid inputs look like `seeds`: random bytes
/// half the time, an edited seed the other half.
pub fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len().max(1);
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        (0..n, proptest::collection::vec(edit(), 0..6)).prop_map(move |(i, edits)| {
            apply(seeds.get(i).map_or(&[][..], Vec::as_slice), &edits)
        }),
    ]
}
