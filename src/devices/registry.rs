//! Device identities: the fold of the `devices` stream (who may connect, for
//! which twin, with which credentials) and the connections the servers
//! report (records in no stream, seen live).

use std::collections::{BTreeMap, HashMap};

use crate::records::{DEVICES_STREAM, DeviceAuth, DeviceSpec, EnrollmentSpec, KeySlot, Record};
use crate::store::fold::Fold;
use crate::twin::{Change, Event, Micros};

/// A device identity as the log has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub spec: DeviceSpec,
    pub enabled: bool,
    /// Why it was disabled, when it is.
    pub reason: Option<String>,
    pub registered_at: Micros,
    /// When its identity last changed (registered, key rotated, status).
    pub updated_at: Micros,
    /// Who registered it.
    pub registered_by: String,
    /// Its connection, as the servers reported it.
    pub connection: Option<Connection>,
    /// When its last connection ended.
    pub disconnected_at: Option<Micros>,
}

/// A device's connection to one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub server: String,
    pub protocol: String,
    pub since: Micros,
}

impl Device {
    /// The generation of a symmetric key slot (`None`: not a symmetric-key
    /// device).
    pub fn generation(&self, slot: KeySlot) -> Option<u32> {
        match (&self.spec.auth, slot) {
            (DeviceAuth::SymmetricKey { primary, .. }, KeySlot::Primary) => Some(*primary),
            (DeviceAuth::SymmetricKey { secondary, .. }, KeySlot::Secondary) => Some(*secondary),
            _ => None,
        }
    }
}

/// An enrollment group as the log has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrollment {
    pub spec: EnrollmentSpec,
    pub created_at: Micros,
    pub created_by: String,
}

/// Every device identity, by id, and which twin has which; the enrollment
/// groups.
#[derive(Debug, Default)]
pub struct Registry {
    devices: BTreeMap<String, Device>,
    by_twin: HashMap<String, String>,
    groups: BTreeMap<String, Enrollment>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    /// The device of a twin, if it has one.
    pub fn of_twin(&self, twin: &str) -> Option<&Device> {
        self.by_twin.get(twin).and_then(|d| self.devices.get(d))
    }

    /// Every device, in id order.
    pub fn all(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn group(&self, name: &str) -> Option<&Enrollment> {
        self.groups.get(name)
    }

    /// Every enrollment group, by name.
    pub fn groups(&self) -> impl Iterator<Item = &Enrollment> {
        self.groups.values()
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

impl Fold for Registry {
    const STREAM: &'static str = DEVICES_STREAM;

    fn apply(&mut self, e: &Event) {
        let Change::Record(r) = &e.change else { return };
        match r {
            Record::DeviceRegistered { device } => {
                self.by_twin.insert(device.twin.clone(), device.id.clone());
                self.devices.insert(
                    device.id.clone(),
                    Device {
                        spec: device.clone(),
                        enabled: true,
                        reason: None,
                        registered_at: e.time,
                        updated_at: e.time,
                        registered_by: e.actor.to_string(),
                        connection: None,
                        disconnected_at: None,
                    },
                );
            }
            Record::DeviceKeyRotated {
                device,
                slot,
                generation,
            } => {
                if let Some(d) = self.devices.get_mut(device) {
                    if let DeviceAuth::SymmetricKey { primary, secondary } = &mut d.spec.auth {
                        match slot {
                            KeySlot::Primary => *primary = *generation,
                            KeySlot::Secondary => *secondary = *generation,
                        }
                    }
                    d.updated_at = e.time;
                }
            }
            Record::DeviceStatusSet {
                device,
                enabled,
                reason,
            } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.enabled = *enabled;
                    d.reason = if *enabled { None } else { reason.clone() };
                    d.updated_at = e.time;
                }
            }
            Record::DeviceDeleted { device } => {
                if let Some(d) = self.devices.remove(device) {
                    self.by_twin.remove(&d.spec.twin);
                }
            }
            Record::EnrollmentGroupCreated { group } => {
                self.groups.insert(
                    group.name.clone(),
                    Enrollment {
                        spec: group.clone(),
                        created_at: e.time,
                        created_by: e.actor.clone(),
                    },
                );
            }
            Record::EnrollmentGroupDeleted { group } => {
                self.groups.remove(group);
            }
            _ => {}
        }
    }

    fn observe(&mut self, e: &Event) {
        match &e.change {
            Change::Record(Record::DeviceConnected {
                device,
                protocol,
                server,
            }) => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.connection = Some(Connection {
                        server: server.clone(),
                        protocol: protocol.clone(),
                        since: e.time,
                    });
                }
            }
            Change::Record(Record::DeviceDisconnected { device, server, .. }) => {
                if let Some(d) = self.devices.get_mut(device) {
                    // A reconnect to another server may have come first.
                    if d.connection.as_ref().is_some_and(|c| &c.server == server) {
                        d.connection = None;
                    }
                    d.disconnected_at = Some(e.time);
                }
            }
            _ => {}
        }
    }
}

/// Why a device id is not one: IoT Hub's rule (up to 128 characters:
/// ASCII letters, digits and `-.%_*?!(),:=@$'`), which also keeps MQTT
/// topic wildcards and separators out of device topics.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must have 1 to 128 characters".into());
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-.%_*?!(),:=@$'".contains(*c)))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed (ASCII letters, digits and -.%_*?!(),:=@$' are)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, r: Record) -> Event {
        Event {
            seq,
            time: seq as i64 * 10,
            actor: "admin".into(),
            change: Change::Record(r),
        }
    }

    #[test]
    fn the_fold_follows_a_device_through_its_life() {
        let mut reg = Registry::default();
        reg.apply(&event(
            1,
            Record::DeviceRegistered {
                device: DeviceSpec {
                    id: "d1".into(),
                    twin: "pump-1".into(),
                    auth: DeviceAuth::SymmetricKey {
                        primary: 1,
                        secondary: 1,
                    },
                    enrollment: None,
                },
            },
        ));
        assert_eq!(
            reg.of_twin("pump-1").map(|d| d.spec.id.as_str()),
            Some("d1")
        );
        reg.apply(&event(
            2,
            Record::DeviceKeyRotated {
                device: "d1".into(),
                slot: KeySlot::Secondary,
                generation: 2,
            },
        ));
        let d = reg.get("d1").expect("registered");
        assert_eq!(
            (
                d.generation(KeySlot::Primary),
                d.generation(KeySlot::Secondary)
            ),
            (Some(1), Some(2))
        );
        reg.observe(&event(
            3,
            Record::DeviceConnected {
                device: "d1".into(),
                protocol: "mqtt".into(),
                server: "a".into(),
            },
        ));
        // A reconnect to server b, then a's late disconnect record.
        reg.observe(&event(
            4,
            Record::DeviceConnected {
                device: "d1".into(),
                protocol: "mqtt".into(),
                server: "b".into(),
            },
        ));
        reg.observe(&event(
            5,
            Record::DeviceDisconnected {
                device: "d1".into(),
                server: "a".into(),
                reason: "replaced".into(),
            },
        ));
        let c = reg.get("d1").and_then(|d| d.connection.clone());
        assert_eq!(c.map(|c| c.server), Some("b".to_owned()));
        reg.apply(&event(
            6,
            Record::DeviceStatusSet {
                device: "d1".into(),
                enabled: false,
                reason: Some("stolen".into()),
            },
        ));
        assert!(!reg.get("d1").expect("still there").enabled);
        reg.apply(&event(
            7,
            Record::DeviceDeleted {
                device: "d1".into(),
            },
        ));
        assert!(reg.get("d1").is_none() && reg.of_twin("pump-1").is_none());
    }

    #[test]
    fn device_ids_follow_iot_hub() {
        for ok in ["pump-1", "a.b_c:d=e@f$g'h(i)j,k!l?m*n%o", &"x".repeat(128)] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/b", "a#", "a+b", "a b", "é", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
