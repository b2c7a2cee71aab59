"""Raw MQTT against twingraph's device endpoint with Eclipse Paho (paho-mqtt,
the client the Azure IoT SDK is built on), for the cases a device SDK never
sends: bad payloads, foreign topics, QoS 2, floods, oversized packets.

    raw.py HOST PORT DEVICE PASSWORD SCENARIO [ARG]

Prints one JSON object of what happened. Scenarios:

- twin: reported patches good and bad, then a GET; the answers in order
  (status, $rid, $version, body) on `$iothub/twin/res/#`.
- foreign-subscribe: subscribes to another device's topic; whether and how
  soon the server closed the connection.
- qos2: publishes a reported patch at QoS 2; whether the server closed.
- oversized ARG: publishes ARG bytes of telemetry; whether the server closed.
- flood ARG: ARG twin GETs at once; the statuses counted.
- wait: subscribes to direct methods (and never answers one), prints
  {"connected": true}, then waits (up to 20 s) for the server to close the
  connection; whether it did.
"""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main():
    host, port, device, password, scenario = sys.argv[1:6]
    arg = sys.argv[6] if len(sys.argv) > 6 else None
    answers = []
    connected = threading.Event()
    closed = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, rc):
        result["connack"] = rc
        connected.set()

    def on_disconnect(client, userdata, rc):
        closed.set()

    def on_message(client, userdata, msg):
        topic = msg.topic
        if not topic.startswith("$iothub/twin/res/"):
            return  # a direct method: never answered here
        # $iothub/twin/res/{status}/?$rid={rid}[&$version={v}]
        status = int(topic.split("/")[3])
        query = dict(p.split("=", 1) for p in topic.split("?", 1)[1].split("&"))
        body = json.loads(msg.payload) if msg.payload else None
        answers.append(
            {
                "status": status,
                "rid": query.get("$rid"),
                "version": query.get("$version"),
                "body": body,
            }
        )

    client = mqtt.Client(client_id=device, protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(f"{host}/{device}/?api-version=2021-04-12", password)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("no CONNACK within 10 s")
    if result["connack"] != 0:
        print(json.dumps(result))
        return

    def closed_within(seconds):
        start = time.monotonic()
        done = closed.wait(seconds)
        return {"closed": done, "after": round(time.monotonic() - start, 3)}

    if scenario == "twin":
        client.subscribe("$iothub/twin/res/#", qos=0)
        time.sleep(0.3)
        patches = [
            b"not json",
            b"[1, 2]",
            json.dumps({"flowSetpoint": "fast"}).encode(),
            json.dumps({"noSuchProperty": 1}).encode(),
            json.dumps({"manufacturer": "Raw Co"}).encode(),
        ]
        for i, body in enumerate(patches):
            client.publish(
                f"$iothub/twin/PATCH/properties/reported/?$rid={i}", body, qos=1
            )
        client.publish(f"$iothub/twin/GET/?$rid={len(patches)}", b"", qos=1)
        deadline = time.monotonic() + 10
        while len(answers) < len(patches) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        result["answers"] = answers
    elif scenario == "foreign-subscribe":
        client.subscribe("devices/someone-else/messages/devicebound/#", qos=1)
        result.update(closed_within(5))
    elif scenario == "qos2":
        client.publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=1",
            json.dumps({"manufacturer": "QoS2 Co"}).encode(),
            qos=2,
        )
        result.update(closed_within(5))
    elif scenario == "oversized":
        body = json.dumps({"flowRate": 1.0, "pad": "x" * int(arg)}).encode()
        client.publish(f"devices/{device}/messages/events/", body, qos=1)
        result.update(closed_within(5))
    elif scenario == "flood":
        client.subscribe("$iothub/twin/res/#", qos=0)
        time.sleep(0.3)
        n = int(arg)
        for i in range(n):
            client.publish(f"$iothub/twin/GET/?$rid={i}", b"", qos=0)
        deadline = time.monotonic() + 15
        while len(answers) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = {}
        for a in answers:
            counts[str(a["status"])] = counts.get(str(a["status"]), 0) + 1
        result["statuses"] = counts
    elif scenario == "wait":
        # Listens for direct methods and never answers them.
        client.subscribe("$iothub/methods/POST/#", qos=0)
        time.sleep(0.3)
        print(json.dumps({"connected": True}), flush=True)
        result.update(closed_within(20))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    result["closed_at_end"] = closed.is_set()
    client.loop_stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
