#!/usr/bin/env python3
"""Convert the npm package `bunny` (the Stanford bunny, public domain) to datasets/bunny.ply.

Usage (from the repository root):

    cd /tmp && npm pack bunny@1.0.1 && mkdir -p bunny && tar xzf bunny-1.0.1.tgz -C bunny
    python3 scripts/convert_bunny.py /tmp/bunny/package/index.js datasets/bunny.ply

The package's index.js is `exports.positions=[[x,y,z],...];exports.cells=[[i,j,k],...]`, i.e. two
JSON arrays. Output: binary little-endian PLY, float x y z, `property list uchar int vertex_indices`.
Standard library only.
"""

import json
import re
import struct
import sys


def read_arrays(js_text):
    arrays = {}
    for name in ("positions", "cells"):
        m = re.search(r"exports\.%s\s*=\s*" % name, js_text)
        if m is None:
            sys.exit("no exports.%s in the input" % name)
        # raw_decode stops at the end of the JSON array, ignoring what follows.
        value, _ = json.JSONDecoder().raw_decode(js_text, m.end())
        arrays[name] = value
    return arrays["positions"], arrays["cells"]


def write_ply(path, positions, cells):
    n = len(positions)
    for c in cells:
        if len(c) != 3 or any(not (0 <= i < n) for i in c):
            sys.exit("bad cell %r" % (c,))
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        "comment Stanford bunny (Turk & Levoy, Stanford 3D Scanning Repository), via npm bunny@1.0.1\n"
        "element vertex %d\n"
        "property float x\nproperty float y\nproperty float z\n"
        "element face %d\n"
        "property list uchar int vertex_indices\n"
        "end_header\n" % (n, len(cells))
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        for p in positions:
            f.write(struct.pack("<3f", *p))
        for c in cells:
            f.write(struct.pack("<B3i", 3, *c))


def topology(positions, cells):
    """Facts the README states: boundary/non-manifold edges, Euler characteristic, signed volume."""
    from collections import Counter

    undirected = Counter()
    directed = Counter()
    for f in cells:
        for k in range(3):
            a, b = f[k], f[(k + 1) % 3]
            undirected[(min(a, b), max(a, b))] += 1
            directed[(a, b)] += 1
    volume = 0.0
    for a, b, c in cells:
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = positions[a], positions[b], positions[c]
        volume += (ax * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx)) / 6.0
    return {
        "boundary_edges": sum(1 for v in undirected.values() if v == 1),
        "non_manifold_edges": sum(1 for v in undirected.values() if v > 2),
        "repeated_directed_edges": sum(1 for v in directed.values() if v > 1),
        "euler_characteristic": len(positions) - len(undirected) + len(cells),
        "signed_volume": round(volume, 4),
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        positions, cells = read_arrays(f.read())
    write_ply(sys.argv[2], positions, cells)
    print("%s: %d vertices, %d faces" % (sys.argv[2], len(positions), len(cells)))
    print(topology(positions, cells))


if __name__ == "__main__":
    main()
