//! Devices: their identities and how they connect.
//!
//! - [`client`]: a device's side of the protocol (simulator, benchmark)
//! - [`sas`]: IoT Hub shared access signatures (parse, verify, sign)
//! - [`keys`]: device keys derived from the server's device secret
//! - [`registry`]: the fold of device identity records
//! - [`hub`]: the devices connected to this server; desired changes and
//!   method calls routed to their sessions
//! - [`service`]: [`Devices`], the owner of identities (register, rotate,
//!   disable, delete, authenticate) and of the hub
//! - [`x509`]: client certificates (thumbprints) on the endpoint
//! - [`mqtt`]: the MQTT device endpoint, speaking Azure IoT Hub's device
//!   protocol (`wire`: packets over a byte stream, topic escapes)

pub mod client;
pub mod hub;
pub mod keys;
pub mod mqtt;
pub mod registry;
pub mod sas;
pub mod service;
mod wire;
pub mod x509;

pub use service::{Credentials, DeviceError, Devices, Keys};
