//! Evaluating a field on a grid: the occupancy grid (coarse-to-fine near the surface), the voxel
//! grid of a volume (on the input grid or one K times finer) and of a CT scan.

use crate::backend::Backend;
use crate::io::WorldFromVoxel;
use crate::operator::ct_geometry::Scan;
use crate::sample::voxels::push_grid_planes;
use crate::sample::Aabb;
use crate::train::loss::sigmoid;
use crate::Result;
use glam::Vec3;
use rayon::prelude::*;

/// `world_from_voxel` of the K-times finer grid over the same box: fine voxel i' is input voxel
/// (i' + ½)/K − ½.
pub fn upsampled_affine(m: WorldFromVoxel, k: usize) -> WorldFromVoxel {
    let k = k as f64;
    let shift = (1.0 / k - 1.0) / 2.0;
    let mut out = m;
    for row in out.iter_mut().take(3) {
        let lin = [row[0], row[1], row[2]];
        for c in 0..3 {
            row[c] = lin[c] / k;
        }
        row[3] += (lin[0] + lin[1] + lin[2]) * shift;
    }
    out
}

/// The field on the grid K times finer than `dims`, as intensities in [0, 1] (sigmoid outputs).
pub fn predict_grid(backend: &mut dyn Backend, dims: [usize; 3], upsample: usize) -> Result<Vec<f32>> {
    predict_planes(backend, dims.map(|n| n * upsample), 3)
}

/// σ(field) at the voxel centres of grid `d` (`dim`-D points), x fastest. The points are made a
/// slab of z-planes at a time, so the memory beyond the output is one slab's points, never the
/// grid's.
fn predict_planes(backend: &mut dyn Backend, d: [usize; 3], dim: usize) -> Result<Vec<f32>> {
    let plane = d[0] * d[1];
    let mut out = vec![0.0; plane * d[2]];
    if plane == 0 {
        return Ok(out);
    }
    let planes = (SLAB_POINTS / plane).max(1);
    let mut pts = Vec::with_capacity(dim * plane * planes.min(d[2]));
    for (s, slab) in out.chunks_mut(plane * planes).enumerate() {
        pts.clear();
        push_grid_planes(&mut pts, d, s * planes..s * planes + slab.len() / plane, dim);
        backend.predict(&pts, slab)?;
    }
    out.iter_mut().for_each(|z| *z = sigmoid(*z));
    Ok(out)
}

/// Points per slab when a grid is evaluated slab by slab.
const SLAB_POINTS: usize = 1 << 20;

/// The scan's grid `k` times finer along each reconstructed axis (the same box).
pub fn upsampled_scan(scan: &Scan, k: usize) -> Scan {
    let mut fine = scan.clone();
    for a in 0..scan.dims {
        fine.voxels[a] *= k;
        fine.voxel_size[a] /= k as f64;
    }
    fine
}

/// The field σ(MLP(γ(x))) at every voxel centre of the scan's grid.
pub fn render_volume(backend: &mut dyn Backend, scan: &Scan) -> Result<Vec<f32>> {
    predict_planes(backend, scan.voxels, scan.dims)
}

/// Samples the field's logits on a `resolution`³ grid of nodes spanning the box (x fastest).
///
/// With `coarse_to_fine`, nodes are first evaluated every [`COARSE_STRIDE`] nodes; the fine
/// nodes are then evaluated only in coarse cells that straddle the 0 level or touch one that
/// does, and elsewhere take the trilinear interpolation of the coarse values (which share one sign
/// there, so no surface is lost or invented in them). A shape detail smaller than a coarse cell
/// that no coarse node sees can be missed, as in Occupancy Networks' MISE; `coarse_to_fine =
/// false` evaluates every node.
pub fn sample_grid(
    backend: &mut dyn Backend,
    bbox: &Aabb,
    resolution: usize,
    coarse_to_fine: bool,
) -> Result<Vec<f32>> {
    let r = resolution;
    let lo = Vec3::from(bbox.min);
    let step = bbox.size() / (r - 1) as f32;
    let node =
        |x: usize, y: usize, z: usize| (lo + step * Vec3::new(x as f32, y as f32, z as f32)).to_array();
    let mut values = vec![0.0f32; r * r * r];
    if !coarse_to_fine || r <= 4 * COARSE_STRIDE {
        let mut pts = Vec::with_capacity(r * r * 3);
        for (z, slab) in values.chunks_mut(r * r).enumerate() {
            pts.clear();
            for y in 0..r {
                for x in 0..r {
                    pts.extend_from_slice(&node(x, y, z));
                }
            }
            backend.predict(&pts, slab)?;
        }
        return Ok(values);
    }
    // Coarse node indices along an axis: 0, S, 2S, …, and the last node.
    let mut axis: Vec<usize> = (0..r).step_by(COARSE_STRIDE).collect();
    if *axis.last().unwrap_or(&0) != r - 1 {
        axis.push(r - 1);
    }
    let nc = axis.len();
    let mut pts = Vec::with_capacity(nc * nc * nc * 3);
    for &z in &axis {
        for &y in &axis {
            for &x in &axis {
                pts.extend_from_slice(&node(x, y, z));
            }
        }
    }
    let mut coarse = vec![0.0f32; nc * nc * nc];
    backend.predict(&pts, &mut coarse)?;
    let cidx = |i: usize, j: usize, k: usize| i + nc * (j + nc * k);
    // cells (nc−1)³ whose corners disagree in sign, dilated by one cell
    let m = nc - 1;
    let mut straddles = vec![false; m * m * m];
    for k in 0..m {
        for j in 0..m {
            for i in 0..m {
                let mut pos = 0;
                for c in 0..8 {
                    pos += (coarse[cidx(i + (c & 1), j + ((c >> 1) & 1), k + (c >> 2))] > 0.0) as u32;
                }
                straddles[i + m * (j + m * k)] = pos != 0 && pos != 8;
            }
        }
    }
    let mut refine = vec![false; m * m * m];
    for k in 0..m {
        for j in 0..m {
            for i in 0..m {
                if !straddles[i + m * (j + m * k)] {
                    continue;
                }
                for dk in k.saturating_sub(1)..=(k + 1).min(m - 1) {
                    for dj in j.saturating_sub(1)..=(j + 1).min(m - 1) {
                        for di in i.saturating_sub(1)..=(i + 1).min(m - 1) {
                            refine[di + m * (dj + m * dk)] = true;
                        }
                    }
                }
            }
        }
    }
    // every fine node: trilinear from the coarse grid
    let cell_of = |v: usize| -> (usize, f32) {
        let c = (v / COARSE_STRIDE).min(m - 1);
        let t = (v - axis[c]) as f32 / (axis[c + 1] - axis[c]) as f32;
        (c, t)
    };
    values.par_chunks_mut(r * r).enumerate().for_each(|(z, slab)| {
        let (k, tz) = cell_of(z);
        for y in 0..r {
            let (j, ty) = cell_of(y);
            for x in 0..r {
                let (i, tx) = cell_of(x);
                let c = |a: usize, b: usize, d: usize| coarse[cidx(i + a, j + b, k + d)];
                let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
                let v00 = lerp(c(0, 0, 0), c(1, 0, 0), tx);
                let v10 = lerp(c(0, 1, 0), c(1, 1, 0), tx);
                let v01 = lerp(c(0, 0, 1), c(1, 0, 1), tx);
                let v11 = lerp(c(0, 1, 1), c(1, 1, 1), tx);
                slab[x + r * y] = lerp(lerp(v00, v10, ty), lerp(v01, v11, ty), tz);
            }
        }
    });
    // the fine nodes of refined cells, evaluated exactly (cell spans include their faces)
    let mut wanted = vec![false; r * r * r];
    for k in 0..m {
        for j in 0..m {
            for i in 0..m {
                if !refine[i + m * (j + m * k)] {
                    continue;
                }
                for z in axis[k]..=axis[k + 1] {
                    for y in axis[j]..=axis[j + 1] {
                        let row = r * (y + r * z);
                        wanted[row + axis[i]..=row + axis[i + 1]].iter_mut().for_each(|w| *w = true);
                    }
                }
            }
        }
    }
    let indices: Vec<usize> = wanted.iter().enumerate().filter_map(|(i, &w)| w.then_some(i)).collect();
    let mut out = Vec::new();
    for chunk in indices.chunks(1 << 18) {
        pts.clear();
        for &n in chunk {
            pts.extend_from_slice(&node(n % r, (n / r) % r, n / (r * r)));
        }
        out.resize(chunk.len(), 0.0);
        backend.predict(&pts, &mut out)?;
        for (&n, &v) in chunk.iter().zip(&out) {
            values[n] = v;
        }
    }
    Ok(values)
}

/// Fine nodes per coarse cell edge in coarse-to-fine grid sampling.
pub const COARSE_STRIDE: usize = 4;
