"""A device of an enrollment group, on Microsoft's Azure IoT device SDK for
Python, connecting to twingraph's MQTT endpoint for the first time
(tests/devices.rs):

    provision.py HOST GROUP_KEY DEVICE_ID MODEL_ID CA_PEM

Derives its key from the group key as the Device Provisioning Service's
samples do (base64 HMAC-SHA256 of the device id under the decoded group
key), announces its model as a Plug and Play device does (the SDK puts
`product_info` starting with `dtmi:` into the MQTT user name as
`model-id`), sends telemetry, reports a property and reads its twin.
MODEL_ID "-" announces none. Prints one JSON object: whether it connected
(and why not), and the twin it read.
"""

import base64
import hashlib
import hmac
import json
import sys

from azure.iot.device import IoTHubDeviceClient, Message


def main():
    host, group_key, device_id, model_id, ca_path = sys.argv[1:6]
    with open(ca_path) as f:
        ca = f.read()
    key = base64.b64encode(
        hmac.new(
            base64.b64decode(group_key), device_id.encode(), hashlib.sha256
        ).digest()
    ).decode()
    options = {"server_verification_cert": ca, "connection_retry": False}
    if model_id != "-":
        options["product_info"] = model_id
    client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=host, device_id=device_id, **options
    )
    try:
        client.connect()
    except Exception as e:  # the SDK's own error for a refused CONNECT
        print(json.dumps({"connected": False, "error": type(e).__name__}))
        client.shutdown()
        return
    msg = Message(json.dumps({"flowRate": 7.5}))
    msg.content_type = "application/json"
    msg.content_encoding = "utf-8"
    client.send_message(msg)
    client.patch_twin_reported_properties({"manufacturer": "Zero Touch"})
    twin = client.get_twin()
    client.shutdown()
    print(json.dumps({"connected": True, "twin": twin}))


if __name__ == "__main__":
    main()
