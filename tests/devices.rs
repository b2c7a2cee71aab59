//! Device credentials against Microsoft's Azure IoT device SDK for Python
//! (`tools/iot-sdk`): the SAS tokens it makes from a device key verify
//! here (and fail with another key, for another device, once expired), and
//! the tokens made here read back there.

use std::process::Command;

use twingraph::devices::sas::{self, SasError};

const KEY: &str = "c2VjcmV0LWRldmljZS1rZXktb2YtMzItYnl0ZXMhIQ==";
const HOST: &str = "twingraph.example.com";

fn sdk(args: &[&str]) -> String {
    let python = crate::support::python_tool("iot-sdk");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/iot-sdk/sas_token.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("the SDK script runs");
    assert!(
        out.status.success(),
        "sas_token.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn now() -> i64 {
    use twingraph::twin::clock::Clock as _;
    twingraph::twin::clock::SystemClock.now() / 1_000_000
}

#[test]
fn tokens_the_azure_iot_sdk_makes_verify() {
    // Device ids with characters the SDKs escape differently.
    for device in ["pump-1", "line3:pump(7)!", "cell 2/robot#1"] {
        let resource = sas::device_resource(HOST, device);
        let token = sdk(&["make", &resource, KEY, "3600"]);
        let parsed = sas::parse(&token).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(parsed.resource, resource);
        assert_eq!(parsed.verify(&resource, KEY, now()), Ok(()), "{token}");
        let other_key = "b3RoZXIta2V5LW9mLWFub3RoZXItZGV2aWNlLTMyYg==";
        assert_eq!(
            parsed.verify(&resource, other_key, now()),
            Err(SasError::BadSignature)
        );
        assert!(matches!(
            parsed.verify(&sas::device_resource(HOST, "someone-else"), KEY, now()),
            Err(SasError::WrongResource { .. })
        ));
    }
    let resource = sas::device_resource(HOST, "pump-1");
    let expired = sdk(&["make", &resource, KEY, "-60"]);
    assert!(matches!(
        sas::parse(&expired)
            .expect("parsed")
            .verify(&resource, KEY, now()),
        Err(SasError::Expired { .. })
    ));
}

#[test]
fn tokens_made_here_read_back_in_the_azure_iot_sdk() {
    let resource = sas::device_resource(HOST, "line3:pump(7)!");
    let expiry = now() + 600;
    let token = sas::sign(&resource, KEY, expiry).expect("token");
    let read: serde_json::Value = serde_json::from_str(&sdk(&["read", &token])).expect("JSON");
    assert_eq!(read["resource"], resource.as_str());
    assert_eq!(read["expiry"], expiry);
}
