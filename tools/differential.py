#!/usr/bin/env python3
"""Differential test of `twingraph check` against Microsoft's reference DTDL
parser (tools/oracle), on randomly mutated copies of real models.

Each case is one mutation of a seed model set (the sample models in dtdl/, and
self-contained files from the shared corpora): a member deleted, a value
replaced by a DTDL-flavoured random value, a key renamed, an array item
duplicated. Both parsers judge every case; any verdict that differs is printed.
Cases on which the reference parser itself crashes are counted apart.

    tools/differential.py [--cases 300] [--seed 1]
    tools/differential.py --docs probes.json     (judge hand-written documents)

Dev-only: needs node/npm (tools/oracle) and a release build of twingraph.
Exit status 1 if the verdicts differ on any case.
"""

import argparse
import copy
import json
import os
import random
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("TWINGRAPH_DTDL_CORPUS", os.path.join(ROOT, "..", "shared", "corpora", "dtdl"))

VALUES = [
    None, True, False, 0, 1, -1, 501, 1.5, "", "x", "1x", "double", "doubel", "string", "integer",
    "point", "Interface", "Property", "Telemetry", "Enum", "Object", "Temperature", "degreeCelsius",
    "kelvin", "metre", "dtmi:x:Missing;1", "dtmi:x:bad::;1", "dtmi:dtdl:context;3", "dtmi:dtdl:context;2",
    "http://example.com/x", [], {}, ["double"], {"@value": "x"}, {"en": "x"},
    {"@type": "Array", "elementSchema": "double"},
    {"@type": "Enum", "valueSchema": "integer", "enumValues": [{"name": "a", "enumValue": 1}]},
]
KEYS = ["@id", "@type", "@context", "@value", "name", "schema", "contents", "extends", "unit", "writable",
        "displayName", "target", "maxMultiplicity", "minMultiplicity", "fields", "enumValues", "foo"]


def load(path):
    with open(path, encoding="utf-8-sig") as f:
        return json.load(f)


def seeds():
    out = []
    samples = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "dtdl")):
        for f in sorted(files):
            if f.endswith(".json"):
                d = load(os.path.join(dirpath, f))
                samples.extend(d if isinstance(d, list) else [d])
    out.append(samples)
    for folder in ("azure-energygrid", "azure-building"):
        docs = []
        for dirpath, _, files in os.walk(os.path.join(CORPUS, "models", folder)):
            for f in sorted(files):
                if f.endswith(".json"):
                    d = load(os.path.join(dirpath, f))
                    docs.extend(d if isinstance(d, list) else [d])
        out.append(docs)
    # Plug-and-play device models that stand alone (no references to other files).
    pnp = os.path.join(CORPUS, "models", "iot-plugandplay", "dtmi")
    for dirpath, _, files in sorted(os.walk(pnp)):
        for f in sorted(files):
            if f.endswith(".json"):
                d = load(os.path.join(dirpath, f))
                ids = set(re.findall(r'"@id":\s*"([^"]+)"', json.dumps(d)))
                refs = set(re.findall(r'"(dtmi:[^"]+)"', json.dumps(d)))
                if refs <= ids | {r for r in refs if r.startswith(("dtmi:dtdl:", "dtmi:iotcentral:", "dtmi:standard:"))}:
                    out.append(d)
    return out


def nodes(v, acc, parent=None, key=None):
    acc.append((parent, key))
    if isinstance(v, dict):
        for k in list(v):
            nodes(v[k], acc, v, k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            nodes(x, acc, v, i)
    return acc


def mutate(doc, rng):
    doc = copy.deepcopy(doc)
    candidates = [(p, k) for p, k in nodes(doc, []) if p is not None]
    parent, key = rng.choice(candidates)
    op = rng.choice(["delete", "replace", "replace", "rename", "duplicate", "tweak", "tweak"])
    if op == "tweak" and isinstance(parent[key], str):
        s = parent[key]
        parent[key] = rng.choice([
            s + "_", "_" + s, s.upper(), s[:-1], s + ";2", s.replace(";1", ""), s.replace(";1", ";1.5"),
            s.replace(":", "::", 1), s * 2, s + "-x", s.replace("dtmi:", "dtmi:dtdl:", 1), s[:1],
        ])
        return doc
    if op == "tweak" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = rng.choice([0, -1, 2**31, 1.0, 1e300, parent[key] + 1])
        return doc
    if op == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op == "replace":
        parent[key] = copy.deepcopy(rng.choice(VALUES))
    elif op == "rename" and isinstance(parent, dict):
        parent[rng.choice(KEYS)] = parent.pop(key)
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    else:
        parent[key] = copy.deepcopy(rng.choice(VALUES))
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--docs", help="a JSON array of documents to judge instead of random mutations")
    args = ap.parse_args()

    cases = []
    if args.docs:
        for doc in load(args.docs):
            cases.append({"valid": True, "options": ["DisallowUndefinedExtensions"], "input": [doc]})
    else:
        rng = random.Random(args.seed)
        pool = seeds()
        for _ in range(args.cases):
            doc = rng.choice(pool)
            for _ in range(rng.choice([1, 1, 2, 3])):
                doc = mutate(doc, rng)
            cases.append({"valid": True, "options": ["DisallowUndefinedExtensions"], "input": [doc]})

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    oracle = os.path.join(ROOT, "tools", "oracle")
    if not os.path.isdir(os.path.join(oracle, "node_modules")):
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=oracle, check=True)

    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "cases.json")
        with open(spec, "w") as f:
            json.dump(cases, f)
        ref = subprocess.run(["node", os.path.join(oracle, "check.mjs"), "-q", "--spec", spec],
                             capture_output=True, text=True)
        ref_invalid, ref_error = {}, set()
        for line in ref.stdout.splitlines():
            m = re.match(r"DISAGREE cases\.json#(\d+) .* ref=(\w+) ?(.*)", line)
            if m:
                i = int(m.group(1)) - 1
                if m.group(2) == "error":
                    ref_error.add(i)
                else:
                    ref_invalid[i] = m.group(3)

        differ = 0
        for i, case in enumerate(cases):
            if i in ref_error:
                continue
            path = os.path.join(tmp, f"case{i}.json")
            with open(path, "w") as f:
                json.dump(case["input"][0], f)
            ours = subprocess.run([os.path.join(ROOT, "target", "release", "twingraph"), "check",
                                   "--deny-undefined-extensions", path], capture_output=True, text=True)
            ours_valid = ours.returncode == 0
            ref_valid = i not in ref_invalid
            if ours_valid != ref_valid:
                differ += 1
                print(f"case {i}: twingraph says {'valid' if ours_valid else 'invalid'}, reference says "
                      f"{'valid' if ref_valid else 'invalid'}")
                print(f"  twingraph: {ours.stdout.strip().splitlines()[0] if ours.stdout.strip() else ''}")
                print(f"  reference: {ref_invalid.get(i, '')}")
                print(f"  input: {json.dumps(case['input'][0])[:400]}")
        judged = len(cases) - len(ref_error)
        print(f"{judged} cases judged by both: {judged - differ} agree, {differ} differ "
              f"({len(ref_error)} more crashed the reference parser)")
        return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
