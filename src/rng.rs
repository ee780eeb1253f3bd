//! Random streams.
//!
//! Every independent piece of work (an HMC chain, a generated sample, a training rank)
//! owns a xoshiro256++ stream derived from (seed, domain, global index). Deriving by
//! index rather than handing out streams in launch order is what makes an ensemble
//! bit-identical whatever the number of MPI ranks or rayon threads.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

pub type Stream = Xoshiro256PlusPlus;

/// Separates streams used for different purposes under the same seed.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Domain {
    HmcChain = 1,
    Sample = 2,
    Train = 3,
    Cluster = 4,
    Misc = 5,
}

/// SplitMix64 step: a bijective 64-bit mixer, used to expand (seed, domain, index)
/// into a full 256-bit xoshiro state with no correlations between nearby indices.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream of work item `index` in `domain` under `seed`.
pub fn stream(seed: u64, domain: Domain, index: u64) -> Stream {
    let mut s = seed;
    let a = splitmix64(&mut s);
    let mut t = a ^ (domain as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let b = splitmix64(&mut t);
    let mut u = b ^ index.wrapping_mul(0xA076_1D64_78BD_642F);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut u).to_le_bytes());
    }
    Xoshiro256PlusPlus::from_seed(bytes)
}

/// Serialises a stream's state (for checkpoints: the RNG state is saved with the field).
pub fn state_bytes(rng: &Stream) -> Vec<u8> {
    serde_json::to_vec(rng).expect("xoshiro state serialises")
}

/// The four 64-bit words of a stream's state (for checkpoints gathered over MPI).
pub fn state_words(rng: &Stream) -> [u64; 4] {
    let v: serde_json::Value = serde_json::to_value(rng).expect("xoshiro state serialises");
    let s = v.get("s").and_then(|s| s.as_array()).expect("xoshiro256++ state is {s: [u64; 4]}");
    std::array::from_fn(|i| s[i].as_u64().expect("u64 word"))
}

pub fn from_state_words(w: [u64; 4]) -> Stream {
    serde_json::from_value(serde_json::json!({ "s": w })).expect("xoshiro state from words")
}

pub fn from_state_bytes(bytes: &[u8]) -> anyhow::Result<Stream> {
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_by_index_domain_and_seed() {
        let a = stream(1, Domain::HmcChain, 0).next_u64();
        assert_ne!(a, stream(1, Domain::HmcChain, 1).next_u64());
        assert_ne!(a, stream(1, Domain::Sample, 0).next_u64());
        assert_ne!(a, stream(2, Domain::HmcChain, 0).next_u64());
        assert_eq!(a, stream(1, Domain::HmcChain, 0).next_u64());
    }

    #[test]
    fn state_round_trip() {
        let mut r = stream(7, Domain::Misc, 3);
        r.next_u64();
        let mut back = from_state_bytes(&state_bytes(&r)).unwrap();
        let mut words = from_state_words(state_words(&r));
        let x = r.next_u64();
        assert_eq!(x, back.next_u64());
        assert_eq!(x, words.next_u64());
    }
}
