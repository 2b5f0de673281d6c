#!/usr/bin/env python3
"""The cone-beam geometry of bench-ct3d.sh, R²-Gaussian's scanner (its cone_beam.yml) scaled to an
N³ volume: the volume spans 2 units (voxel 2/N), source 5 units from the axis, detector 7 units
from the source, (DETECTOR or 2N)² pixels over 4 × 4 units (R²-Gaussian: 512² for 256³),
VIEWS views over 360°.  Usage: cone_geometry.py N VIEWS [DETECTOR] > geometry.toml
In these units line integrals stay below about 2 for attenuations in [0, 1], so I0 = 1e5 photons
leave every ray well exposed, as in R²-Gaussian's data."""
import sys

n, views = int(sys.argv[1]), int(sys.argv[2])
det = int(sys.argv[3]) if len(sys.argv) > 3 else 2 * n
print(f"""beam = "cone"
dims = 3
dso = 5.0
dsd = 7.0
[detector]
pixels = [{det}, {det}]
pixel_size = [{4.0 / det!r}, {4.0 / det!r}]
[volume]
voxels = [{n}, {n}, {n}]
voxel_size = [{2.0 / n!r}, {2.0 / n!r}, {2.0 / n!r}]
[angles]
count = {views}
unit = "degrees"
span = 360.0
""")
