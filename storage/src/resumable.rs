//! A SHA-256/512 hash whose state can be stored and resumed elsewhere: an upload to object
//! storage may get its next chunk on another replica or after a restart, and re-reading what
//! was uploaded to hash it at the end would double the traffic. The compression function is
//! sha2's; only the chaining state, the length and the unprocessed tail are kept here.

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;

use crate::digest::{Algorithm, Digest};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashState {
    pub algorithm: Algorithm,
    /// The chaining words (SHA-256's are u32, kept widened).
    words: [u64; 8],
    /// Bytes hashed so far, the tail included.
    length: u64,
    /// Bytes not yet compressed (less than one block).
    #[serde(with = "hex_bytes")]
    tail: Vec<u8>,
}

const SHA256_INIT: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const SHA512_INIT: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

impl HashState {
    pub fn new(algorithm: Algorithm) -> Self {
        let words = match algorithm {
            Algorithm::Sha256 => SHA256_INIT.map(u64::from),
            Algorithm::Sha512 => SHA512_INIT,
        };
        HashState {
            algorithm,
            words,
            length: 0,
            tail: Vec::new(),
        }
    }

    fn block_len(&self) -> usize {
        match self.algorithm {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        let block = self.block_len();
        if !self.tail.is_empty() {
            let take = (block - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < block {
                return;
            }
            let tail = std::mem::take(&mut self.tail);
            self.compress(&tail);
        }
        let whole = data.len() / block * block;
        if whole > 0 {
            self.compress(&data[..whole]);
        }
        self.tail.extend_from_slice(&data[whole..]);
    }

    fn compress(&mut self, blocks: &[u8]) {
        match self.algorithm {
            Algorithm::Sha256 => {
                let mut state = self.words.map(|w| w as u32);
                let blocks: Vec<_> = blocks
                    .chunks_exact(64)
                    .map(|b| *GenericArray::from_slice(b))
                    .collect();
                sha2::compress256(&mut state, &blocks);
                self.words = state.map(u64::from);
            }
            Algorithm::Sha512 => {
                let blocks: Vec<_> = blocks
                    .chunks_exact(128)
                    .map(|b| *GenericArray::from_slice(b))
                    .collect();
                sha2::compress512(&mut self.words, &blocks);
            }
        }
    }

    /// The digest of everything hashed (FIPS 180-4 padding: 0x80, zeros, the bit length).
    pub fn finish(&self) -> Digest {
        let mut done = self.clone();
        let block = done.block_len();
        let length_bytes = block / 8; // 8 for SHA-256, 16 for SHA-512
        let bits = u128::from(self.length) * 8;
        let mut pad = vec![0x80u8];
        let used = (self.tail.len() + 1) % block;
        let zeros = (block + block - length_bytes - used) % block;
        pad.resize(1 + zeros, 0);
        pad.extend_from_slice(&bits.to_be_bytes()[16 - length_bytes..]);
        let length = done.length;
        done.update(&pad);
        done.length = length;
        debug_assert!(done.tail.is_empty());
        let hex: String = match self.algorithm {
            Algorithm::Sha256 => done
                .words
                .iter()
                .map(|w| format!("{:08x}", *w as u32))
                .collect(),
            Algorithm::Sha512 => done.words.iter().map(|w| format!("{w:016x}")).collect(),
        };
        format!("{}:{hex}", self.algorithm.name())
            .parse()
            .expect("a well-formed digest")
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn matches_sha2_across_any_split_and_a_round_trip_through_json() {
        for alg in Algorithm::ALL {
            for len in [
                0,
                1,
                55,
                56,
                63,
                64,
                65,
                111,
                112,
                127,
                128,
                129,
                1000,
                4096 + 7,
            ] {
                let data = pattern(len);
                let want = alg.digest_of(&data);
                for split in [0, 1.min(len), len / 3, len / 2, len.saturating_sub(1), len] {
                    let mut h = HashState::new(alg);
                    h.update(&data[..split]);
                    let json = serde_json::to_string(&h).unwrap();
                    let mut h: HashState = serde_json::from_str(&json).unwrap();
                    h.update(&data[split..]);
                    assert_eq!(h.len(), len as u64);
                    assert_eq!(h.finish(), want, "{alg:?} len {len} split {split}");
                }
            }
        }
    }
}
