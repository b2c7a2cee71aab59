"""Device SAS tokens through Microsoft's Azure IoT device SDK for Python.

    sas_token.py make RESOURCE KEY TTL   prints a token the SDK makes for RESOURCE
                                     ({host}/devices/{id}), signed with KEY
                                     (base64), valid TTL seconds from now
    sas_token.py read TOKEN              prints the SDK's reading of TOKEN as JSON:
                                     {"resource", "expiry"}
"""
import json
import sys

from azure.iot.device.common.auth import sastoken, signing_mechanism

if sys.argv[1] == "make":
    resource, key, ttl = sys.argv[2], sys.argv[3], int(sys.argv[4])
    mechanism = signing_mechanism.SymmetricKeySigningMechanism(key)
    print(str(sastoken.RenewableSasToken(resource, mechanism, ttl=ttl)))
elif sys.argv[1] == "read":
    token = sastoken.NonRenewableSasToken(sys.argv[2])
    print(json.dumps({"resource": token.resource_uri, "expiry": token.expiry_time}))
else:
    sys.exit(f"unknown command {sys.argv[1]!r}")
