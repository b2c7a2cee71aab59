//! Devices: what they present to connect. So far the shared access
//! signatures of Azure IoT Hub's device protocol ([`sas`]), which the device
//! SDKs make from a device's symmetric key.

pub mod sas;
