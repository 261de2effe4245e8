//! Versioned encoding of stored values: one format-version byte, then JSON.
//!
//! Every value berth persists goes through [`encode`] / [`decode`], so a later build can tell
//! old records from new ones and migrate them instead of misreading them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A value kept in the metadata store.
pub trait Record: Serialize + DeserializeOwned {
    /// Name used in error messages.
    const KIND: &'static str;
    /// Current format version; bump it (and teach `decode_version` the old one) on change.
    const VERSION: u8;

    /// Decodes a value written with an older `version`. The default accepts only the current one.
    fn decode_version(version: u8, json: &[u8]) -> Result<Self> {
        if version != Self::VERSION {
            return Err(Error::UnsupportedVersion {
                kind: Self::KIND,
                found: version,
                supported: Self::VERSION,
            });
        }
        serde_json::from_slice(json).map_err(|e| Error::Corrupt {
            kind: Self::KIND,
            reason: e.to_string(),
        })
    }
}

pub fn encode<R: Record>(value: &R) -> Vec<u8> {
    let mut out = vec![R::VERSION];
    // Serializing plain data structs into a Vec cannot fail.
    serde_json::to_writer(&mut out, value).expect("record serializes");
    out
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R> {
    let (&version, json) = bytes.split_first().ok_or(Error::Corrupt {
        kind: R::KIND,
        reason: "empty value".into(),
    })?;
    R::decode_version(version, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Sample {
        n: u32,
    }
    impl Record for Sample {
        const KIND: &'static str = "sample";
        const VERSION: u8 = 2;
    }

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let bytes = encode(&Sample { n: 7 });
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), Sample { n: 7 });
        let mut newer = bytes.clone();
        newer[0] = 3;
        assert!(matches!(
            decode::<Sample>(&newer),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
        assert!(matches!(decode::<Sample>(b""), Err(Error::Corrupt { .. })));
    }
}
