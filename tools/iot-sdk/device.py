"""A device on Microsoft's Azure IoT device SDK for Python, against twingraph's
MQTT endpoint, for the integration tests (tests/devices.rs).

    device.py CONNECTION_STRING CA_PEM GRAPHQL_URL TWIN [websockets]

Connects as the SDK does (MQTT over TLS to port 8883 of the connection
string's host, or with `websockets` MQTT over WebSocket over TLS to port 443
at /$iothub/websocket; the CA given as the server's verification
certificate), then
walks through what a Plug and Play device does, and prints one JSON object of
what it saw:

- sends telemetry (`flowRate`, and `bogus`, which no model declares);
- patches reported properties (a plain value, and an acknowledged writable
  property `{"value", "ac", "av", "ad"}`);
- reads its twin (`get_twin`);
- asks the server (GraphQL, `patchDesired`) for a desired change and waits for
  the SDK's desired-property patch handler;
- answers a direct method that the server's command mutation sends, while
  the mutation (on another thread) waits for the answer;
- reads its twin again.

Anything unexpected raises, and the script exits non-zero.
"""

import json
import ssl
import sys
import threading
import time
import urllib.request

from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse


CA_CONTEXT = None


def graphql(url, query):
    req = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60, context=CA_CONTEXT) as r:
        return json.loads(r.read())


def wait_for(what, predicate, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"waited {within}s for {what}")


def main():
    global CA_CONTEXT
    conn, ca_path, url, twin = sys.argv[1:5]
    websockets = sys.argv[5:6] == ["websockets"]
    with open(ca_path) as f:
        ca = f.read()
    CA_CONTEXT = ssl.create_default_context(cafile=ca_path)
    client = IoTHubDeviceClient.create_from_connection_string(
        conn, server_verification_cert=ca, keep_alive=30, websockets=websockets
    )
    patches = []
    methods = []

    def on_patch(patch):
        patches.append(patch)

    def on_method(request):
        methods.append({"name": request.name, "payload": request.payload})
        client.send_method_response(
            MethodResponse.create_from_method_request(
                request, 200, {"ran": request.name, "got": request.payload}
            )
        )

    client.on_twin_desired_properties_patch_received = on_patch
    client.on_method_request_received = on_method
    client.connect()
    seen = {}

    msg = Message(json.dumps({"flowRate": 42.5, "bogus": 1}))
    msg.content_type = "application/json"
    msg.content_encoding = "utf-8"
    client.send_message(msg)

    client.patch_twin_reported_properties({"manufacturer": "ACME"})
    seen["twin_before"] = client.get_twin()

    # A desired change made through GraphQL reaches the handler.
    answer = graphql(
        url,
        'mutation { patchDesired(id: "%s", patch: {flowSetpoint: 17.5}) { version } }' % twin,
    )
    seen["set_desired"] = answer
    wait_for("the desired patch", lambda: len(patches) >= 1)
    seen["patches"] = list(patches)
    version = patches[0]["$version"]
    # The Plug and Play acknowledgement of that desired version.
    client.patch_twin_reported_properties(
        {"flowSetpoint": {"value": 17.5, "ac": 200, "av": version, "ad": "applied"}}
    )

    # A command through GraphQL becomes a direct method, answered here.
    result = {}

    def invoke():
        result["answer"] = graphql(
            url,
            'mutation { equipmentResetFault(id: "%s") { command status response } }' % twin,
        )

    t = threading.Thread(target=invoke)
    t.start()
    t.join(30)
    seen["methods"] = methods
    seen["command"] = result.get("answer")
    seen["twin_after"] = client.get_twin()
    client.shutdown()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
