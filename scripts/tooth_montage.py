"""Montage of the tooth reconstructions (scripts/tooth_table.sh's output folder) as one PNG, every
panel on the reference's grey scale (0 to the 99.9th percentile of FBP-181).
    python3 scripts/tooth_montage.py runs/tooth            # writes runs/tooth/montage.png
Needs numpy, nibabel and Pillow."""
import sys
import numpy as np
import nibabel as nib
from PIL import Image, ImageDraw

out = sys.argv[1]
panels = [("fbp181", "FBP 181 (ref)"), ("sart181", "SART 181"), ("fbp45", "FBP 45"), ("sart45", "SART 45"),
          ("fit45/recon", "fit ct 45"), ("fbp20", "FBP 20"), ("sart20", "SART 20"), ("fit20/recon", "fit ct 20")]
ref = nib.load(f"{out}/fbp181.nii.gz").get_fdata()[:, :, 0]
hi = np.percentile(ref, 99.9)
tiles = []
for name, label in panels:
    try:
        v = nib.load(f"{out}/{name}.nii.gz").get_fdata()[:, :, 0]
    except FileNotFoundError:
        v = np.zeros_like(ref)
    g = (np.clip(v / hi, 0, 1).T[::-1] * 255).astype(np.uint8)  # x right, y up
    im = Image.fromarray(g).convert("RGB")
    ImageDraw.Draw(im).text((4, 4), label, fill=(255, 200, 0))
    tiles.append(im)
w, h = tiles[0].size
m = Image.new("RGB", (4 * w, 2 * h))
for i, t in enumerate(tiles):
    m.paste(t, ((i % 4) * w, (i // 4) * h))
m.save(f"{out}/montage.png")
print(f"{out}/montage.png")
