//! The Standard Webhooks signature (standardwebhooks.com): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the secret's bytes (`whsec_<base64>`),
//! sent as `webhook-signature: v1,<base64>`; several space-separated during a rotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Standard Webhooks asks for 24 to 64 random bytes.
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

/// The key bytes of a secret, or why it is not one.
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| "must be whsec_ followed by base64".to_string())?;
    if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
        return Err(format!(
            "must hold {MIN_BYTES} to {MAX_BYTES} bytes, not {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A new random secret in the standard form.
pub fn generate() -> String {
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` header value for `body` under every key in `keys`.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| {
            // HMAC takes keys of any length.
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_example() {
        // The example of the Standard Webhooks specification.
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_else(|_| STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
        let sig = signature_header(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_twice_and_bad_secrets_are_refused() {
        let (a, b) = (key_of(&generate()).unwrap(), key_of(&generate()).unwrap());
        let both = signature_header(&[a, b], "id", 1, b"{}");
        assert_eq!(both.split(' ').count(), 2);
        assert!(key_of("whsec_!!").is_err());
        assert!(key_of("whsec_c2hvcnQ=").is_err());
    }
}
