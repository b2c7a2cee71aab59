//! Device keys, derived rather than stored: a device's symmetric key is the
//! HMAC-SHA256 of its id, key slot and the slot's generation under the
//! server's device secret. The log keeps only generations, so neither it,
//! nor a backup of it, nor a replica's copy ever holds a key; rotating a
//! key is a new generation. (The Device Provisioning Service derives the
//! keys of an enrollment group's devices the same way from the group key,
//! [`group_device_key`].)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use crate::records::KeySlot;

/// The server's device secret: what every device key derives from. Never
/// shown, logged or stored in the log.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

impl Secret {
    /// A secret from its bytes (at least [`MIN_SECRET_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<Secret, String> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the device secret must have at least {MIN_SECRET_BYTES} bytes, it has {}",
                bytes.len()
            ));
        }
        Ok(Secret(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// A new random secret, as base64 text (what `serve` writes next to the
    /// embedded store when none is configured).
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        BASE64.encode(bytes)
    }

    /// The key (base64, 32 bytes, as IoT Hub shows device keys) of
    /// `device`'s `slot` at `generation`.
    pub fn device_key(&self, device: &str, slot: KeySlot, generation: u32) -> String {
        let message = format!(
            "twingraph device key\0{device}\0{}\0{generation}",
            slot.name()
        );
        BASE64.encode(hmac::sign(&self.0, message.as_bytes()).as_ref())
    }
}

impl Secret {
    /// The key (base64) of enrollment group `group` at `generation`.
    pub fn group_key(&self, group: &str, generation: u32) -> String {
        let message = format!("twingraph enrollment group key\0{group}\0{generation}");
        BASE64.encode(hmac::sign(&self.0, message.as_bytes()).as_ref())
    }
}

/// The key of the device registering as `registration_id` in an enrollment
/// group whose key is `group_key` (base64): the Device Provisioning
/// Service's derivation, which its device SDK samples compute on the device.
pub fn group_device_key(group_key: &str, registration_id: &str) -> Result<String, String> {
    let key = BASE64
        .decode(group_key)
        .map_err(|_| "the group key is not base64".to_owned())?;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &key),
        registration_id.as_bytes(),
    );
    Ok(BASE64.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_device_slot_and_generation_and_need_the_secret() {
        let s = Secret::new(&[7u8; 32]).expect("long enough");
        let k = s.device_key("pump-1", KeySlot::Primary, 1);
        assert_eq!(k, s.device_key("pump-1", KeySlot::Primary, 1));
        assert_eq!(BASE64.decode(&k).expect("base64").len(), 32);
        for other in [
            s.device_key("pump-2", KeySlot::Primary, 1),
            s.device_key("pump-1", KeySlot::Secondary, 1),
            s.device_key("pump-1", KeySlot::Primary, 2),
            Secret::new(&[8u8; 32])
                .expect("long enough")
                .device_key("pump-1", KeySlot::Primary, 1),
        ] {
            assert_ne!(k, other);
        }
        assert!(Secret::new(&[1u8; 31]).is_err());
        assert!(!format!("{s:?}").contains('7'));
    }

    /// The DPS derivation: HMAC-SHA256 of the registration id under the
    /// decoded group key, base64 (the Python SDK's sample computes it on the
    /// device; the end-to-end test provisions through it).
    #[test]
    fn group_keys_derive_as_the_provisioning_service_does() {
        let group = BASE64.encode(b"a group key of thirty-two bytes!");
        let a = group_device_key(&group, "sn-001").expect("derives");
        let b = group_device_key(&group, "sn-002").expect("derives");
        assert_ne!(a, b);
        let by_hand = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"a group key of thirty-two bytes!"),
            b"sn-001",
        );
        assert_eq!(a, BASE64.encode(by_hand.as_ref()));
        assert!(group_device_key("not base64!", "x").is_err());
    }
}
