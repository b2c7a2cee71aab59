//! Shared access signatures (SAS), as Azure IoT Hub's device SDKs make them
//! and as the hub checks them: a device proves that it holds its symmetric
//! key by signing the resource it connects to and an expiry time.
//!
//! A token reads `SharedAccessSignature sr={resource}&sig={signature}&se={expiry}`
//! (`&skn={policy}` for a shared access policy's token), where `resource` is
//! the URL-encoded `{host}/devices/{deviceId}`, `expiry` the Unix time in
//! seconds after which it is refused, and `signature` the URL-encoded
//! base64 HMAC-SHA256 of `{resource}\n{expiry}` under the base64-decoded key.
//! The signature is checked over the `sr` field exactly as sent: SDKs
//! URL-encode with different escapes (Python's `quote` escapes `!*'()`,
//! JavaScript's `encodeURIComponent` does not), and each signs its own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

/// Why a token is refused. Messages say what is wrong, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("not a shared access signature: {0}")]
    Malformed(&'static str),
    #[error("the token expired at {expiry} (Unix seconds)")]
    Expired { expiry: i64 },
    #[error("the token is for {found:?}, not for {expected:?}")]
    WrongResource { expected: String, found: String },
    #[error("the signature does not match the key")]
    BadSignature,
}

/// A parsed token: what it claims, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sas {
    /// The resource, URL-decoded (`{host}/devices/{deviceId}`).
    pub resource: String,
    /// Unix seconds after which the token is refused.
    pub expiry: i64,
    /// The shared access policy's name (`skn`), for policy tokens.
    pub policy: Option<String>,
    /// `sr` as sent, which is what was signed.
    sr: String,
    signature: Vec<u8>,
}

/// The resource a device's token names: `{host}/devices/{deviceId}`.
pub fn device_resource(host: &str, device: &str) -> String {
    format!("{host}/devices/{device}")
}

/// Parses `token` (with or without its `SharedAccessSignature ` prefix).
pub fn parse(token: &str) -> Result<Sas, SasError> {
    let fields = token
        .trim()
        .strip_prefix("SharedAccessSignature ")
        .unwrap_or(token.trim());
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for pair in fields.split('&') {
        let (name, value) = pair
            .split_once('=')
            .ok_or(SasError::Malformed("a field without '='"))?;
        let slot = match name {
            "sr" => &mut sr,
            "sig" => &mut sig,
            "se" => &mut se,
            "skn" => &mut skn,
            _ => return Err(SasError::Malformed("an unknown field")),
        };
        if slot.replace(value).is_some() {
            return Err(SasError::Malformed("a field given twice"));
        }
    }
    let sr = sr.ok_or(SasError::Malformed("no sr (resource)"))?;
    let sig = sig.ok_or(SasError::Malformed("no sig (signature)"))?;
    let se = se.ok_or(SasError::Malformed("no se (expiry)"))?;
    let expiry = se
        .parse::<i64>()
        .map_err(|_| SasError::Malformed("se is not a whole number of seconds"))?;
    let signature = BASE64
        .decode(decode(sig)?)
        .map_err(|_| SasError::Malformed("sig is not base64"))?;
    Ok(Sas {
        resource: decode(sr)?,
        expiry,
        policy: skn.map(decode).transpose()?,
        sr: sr.to_owned(),
        signature,
    })
}

impl Sas {
    /// Checks the token for `resource` under `key` (base64, as IoT Hub
    /// shows device keys) at `now` (Unix seconds). The host part compares
    /// without regard to case, the rest exactly.
    pub fn verify(&self, resource: &str, key: &str, now: i64) -> Result<(), SasError> {
        if !same_resource(&self.resource, resource) {
            return Err(SasError::WrongResource {
                expected: resource.to_owned(),
                found: self.resource.clone(),
            });
        }
        let key = BASE64
            .decode(key)
            .map_err(|_| SasError::Malformed("the key is not base64"))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let message = format!("{}\n{}", self.sr, self.expiry);
        // Constant time: ring compares the tags without early exit.
        hmac::verify(&key, message.as_bytes(), &self.signature)
            .map_err(|_| SasError::BadSignature)?;
        if now >= self.expiry {
            return Err(SasError::Expired {
                expiry: self.expiry,
            });
        }
        Ok(())
    }
}

/// A token for `resource`, signed with `key` (base64), valid until
/// `expiry` (Unix seconds): what a device SDK makes.
pub fn sign(resource: &str, key: &str, expiry: i64) -> Result<String, SasError> {
    let key = BASE64
        .decode(key)
        .map_err(|_| SasError::Malformed("the key is not base64"))?;
    let sr = encode(resource);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &key),
        format!("{sr}\n{expiry}").as_bytes(),
    );
    let sig = encode(&BASE64.encode(tag.as_ref()));
    Ok(format!(
        "SharedAccessSignature sr={sr}&sig={sig}&se={expiry}"
    ))
}

fn same_resource(found: &str, expected: &str) -> bool {
    let split = |r: &str| {
        let (host, rest) = r.split_once('/').unwrap_or((r, ""));
        (host.to_ascii_lowercase(), rest.to_owned())
    };
    split(found) == split(expected)
}

/// Percent-encoding of everything but RFC 3986's unreserved characters,
/// upper-case hex (Python's `urllib.parse.quote(s, safe="")`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding (`+` stays `+`: tokens are not form data).
fn decode(s: &str) -> Result<String, SasError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(SasError::Malformed("a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SasError::Malformed("not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWRldmljZS1rZXktb2YtMzItYnl0ZXMhIQ==";

    #[test]
    fn a_token_made_here_verifies_and_its_tampered_forms_do_not() {
        let resource = device_resource("hub.example.com", "pump-1");
        let token = sign(&resource, KEY, 2_000).expect("token");
        let sas = parse(&token).expect("parsed");
        assert_eq!(sas.resource, resource);
        assert_eq!(sas.verify(&resource, KEY, 1_999), Ok(()));
        assert_eq!(
            sas.verify(&resource, KEY, 2_000),
            Err(SasError::Expired { expiry: 2_000 })
        );
        assert!(matches!(
            sas.verify(&device_resource("hub.example.com", "pump-2"), KEY, 0),
            Err(SasError::WrongResource { .. })
        ));
        assert_eq!(
            sas.verify(&device_resource("HUB.example.com", "pump-1"), KEY, 0),
            Ok(()),
            "host names compare without case"
        );
        let other = BASE64.encode([7u8; 32]);
        assert_eq!(
            sas.verify(&resource, &other, 0),
            Err(SasError::BadSignature)
        );
        let later = token.replace("se=2000", "se=9999");
        assert_eq!(
            parse(&later).expect("parsed").verify(&resource, KEY, 0),
            Err(SasError::BadSignature),
            "a moved expiry breaks the signature"
        );
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (token, why) in [
            ("SharedAccessSignature sr=a&se=1", "no sig"),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=x", "se is not"),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=1&sr=b", "twice"),
            ("SharedAccessSignature sr=a&sig=%ZZ&se=1", "%-escape"),
            ("SharedAccessSignature sr=a&sig=!!&se=1", "base64"),
            ("SharedAccessSignature what", "without '='"),
        ] {
            let e = parse(token).expect_err(token);
            assert!(e.to_string().contains(why), "{token}: {e}");
        }
    }
}
