"""A device authenticating with an X.509 client certificate, on Microsoft's
Azure IoT device SDK for Python, against twingraph's MQTT endpoint
(tests/devices.rs):

    x509_device.py HOST DEVICE_ID CERT_PEM KEY_PEM CA_PEM [MODEL_ID]

Connects (MQTT over TLS, port 8883, the certificate presented in the
handshake; CERT_PEM may hold the chain up to its authority), announcing
MODEL_ID (Plug and Play, through `product_info`) when given, reports a
property and reads its twin. Prints one JSON object:
whether it connected (and why not), and the twin it read.
"""

import json
import sys

from azure.iot.device import X509, IoTHubDeviceClient


def main():
    host, device_id, cert, key, ca_path = sys.argv[1:6]
    with open(ca_path) as f:
        ca = f.read()
    options = {}
    if len(sys.argv) > 6:
        options["product_info"] = sys.argv[6]
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=cert, key_file=key),
        hostname=host,
        device_id=device_id,
        server_verification_cert=ca,
        connection_retry=False,
        **options,
    )
    try:
        client.connect()
    except Exception as e:  # the SDK's own error for a refused CONNECT
        print(json.dumps({"connected": False, "error": type(e).__name__}))
        client.shutdown()
        return
    client.patch_twin_reported_properties({"manufacturer": "X509 Co"})
    twin = client.get_twin()
    client.shutdown()
    print(json.dumps({"connected": True, "twin": twin}))


if __name__ == "__main__":
    main()
