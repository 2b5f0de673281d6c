//! The inside test on the device (`cuda/winding.cu`): a mesh's winding-number tree uploaded once
//! ([`DeviceMesh`]), and points labelled against it by the two passes of
//! [`WindingNumber::label_points`] (the same traversal and sums in f64).

use super::backend::CudaBackend;
use super::buffers::Gpu;
use super::cuda_error;
use crate::backend::Backend;
use crate::geometry::winding::{WindingNumber, LABEL_BETA, LABEL_RECHECK};
use crate::geometry::TriMesh;
use crate::sample::Aabb;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// Depth of the per-thread traversal stack in `cuda/winding.cu` (`WINDING_STACK`).
pub const WINDING_STACK: usize = 64;

/// Threads per block of the winding kernels: small blocks spread a 32,768-point batch over
/// every SM (one thread per point; traversals of different length finish at different times).
const WINDING_THREADS: u32 = 64;

fn winding_grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(WINDING_THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (WINDING_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// A mesh on the device, ready for sampling near its surface and labelling points against it:
/// the winding-number tree (nodes, leaf triangles, far-field data) and the faces in source order.
/// Made by [`CudaBackend::upload_mesh`]; use it with the backend that made it.
pub struct DeviceMesh {
    pub(super) nodes: CudaSlice<u32>,
    pub(super) tris: CudaSlice<f32>,
    pub(super) far: CudaSlice<f64>,
    pub(super) faces: CudaSlice<f32>,
    pub(super) n_nodes: i32,
    pub(super) n_faces: u64,
    pub(super) beta2: f64,
    /// The box uniform points are drawn from.
    pub bbox: Aabb,
    /// Depth of the deepest tree node (the stack needs one more slot).
    pub max_depth: usize,
}

impl DeviceMesh {
    pub fn n_faces(&self) -> u64 {
        self.n_faces
    }
}

impl CudaBackend {
    /// Uploads `mesh_in_unit`'s faces and `winding`'s tree once; the arrays are those of
    /// [`WindingNumber::export_flat`]. Fails when the tree is deeper than the device stack.
    pub fn upload_mesh(
        &self,
        winding: &WindingNumber,
        mesh_in_unit: &TriMesh,
        bbox: Aabb,
    ) -> crate::Result<DeviceMesh> {
        let flat = winding.export_flat();
        if flat.max_depth + 1 > WINDING_STACK {
            return Err(crate::Error::Config(format!(
                "the mesh's BVH is {} levels deep; the GPU labeller's stack holds {WINDING_STACK}",
                flat.max_depth + 1
            )));
        }
        if flat.nodes.len() > i32::MAX as usize {
            return Err(crate::Error::Config("the mesh is too large for the GPU labeller".into()));
        }
        let n_pos = mesh_in_unit.positions.len();
        let mut faces = Vec::with_capacity(9 * mesh_in_unit.triangles.len());
        for (f, t) in mesh_in_unit.triangles.iter().enumerate() {
            for &v in t {
                let p = mesh_in_unit.positions.get(v as usize).ok_or_else(|| {
                    crate::Error::Input(format!(
                        "face {f} refers to vertex {v} but the mesh has {n_pos} vertices"
                    ))
                })?;
                faces.extend_from_slice(&p.to_array());
            }
        }
        let gpu = &self.gpu;
        let nodes = gpu.alloc_from(flat.nodes.as_flattened())?;
        let tris = gpu.alloc_from(flat.tris.as_flattened())?;
        let faces_d = gpu.alloc_from(&faces)?;
        let far = gpu.alloc_from(flat.far.as_flattened())?;
        // other streams may use the mesh once the copies are done
        self.synchronize()?;
        Ok(DeviceMesh {
            nodes,
            tris,
            far,
            faces: faces_d,
            n_nodes: flat.nodes.len() as i32,
            n_faces: mesh_in_unit.triangles.len() as u64,
            beta2: flat.beta2,
            bbox,
            max_depth: flat.max_depth,
        })
    }

    /// `labels[i]` = 1 when point i (row-major n × 3 on the device) is inside: the two passes of
    /// [`WindingNumber::label_points`].
    pub(super) fn label_device(
        gpu: &Gpu,
        mesh: &DeviceMesh,
        points: &CudaView<f32>,
        n: usize,
        labels: &mut CudaViewMut<f32>,
    ) -> crate::Result<()> {
        if points.len() < 3 * n || labels.len() < n {
            return Err(crate::Error::Config("CUDA winding_label: buffers too small".into()));
        }
        let (n_i, bc, bf, re) = (n as i64, LABEL_BETA * LABEL_BETA, mesh.beta2, LABEL_RECHECK);
        launch!(
            gpu,
            "winding_label",
            winding_grid(n),
            points,
            &n_i,
            &mesh.nodes,
            &mesh.tris,
            &mesh.far,
            &mesh.n_nodes,
            &bc,
            &bf,
            &re,
            labels
        )
    }

    /// Labels host points on the device (for tests and the benchmark). Returns the labels and
    /// the device time of the labelling kernel alone, in seconds.
    pub fn label_points(&self, mesh: &DeviceMesh, points: &[[f32; 3]]) -> crate::Result<(Vec<f32>, f64)> {
        let n = points.len();
        if n == 0 {
            return Ok((vec![], 0.0));
        }
        let gpu = &self.gpu;
        let mut p = gpu.alloc::<f32>(3 * n)?;
        gpu.upload(points.as_flattened(), &mut p)?;
        let mut out = gpu.alloc::<f32>(n)?;
        let t0 = self.timing_event()?;
        Self::label_device(gpu, mesh, &p.slice(0..3 * n), n, &mut out.slice_mut(0..n))?;
        let t1 = self.timing_event()?;
        let mut host = vec![0.0; n];
        gpu.download(&out.slice(0..n), &mut host)?;
        let ms = t0.elapsed_ms(&t1).map_err(|e| cuda_error("reading event times", e))?;
        Ok((host, ms as f64 / 1e3))
    }

    /// The hierarchical winding numbers of host points at accuracy β² (the tree's own β² gives
    /// [`WindingNumber::winding`]), computed on the device; for tests.
    pub fn winding_numbers(
        &self,
        mesh: &DeviceMesh,
        points: &[[f32; 3]],
        beta2: f64,
    ) -> crate::Result<Vec<f64>> {
        let n = points.len();
        if n == 0 {
            return Ok(vec![]);
        }
        let gpu = &self.gpu;
        let mut p = gpu.alloc::<f32>(3 * n)?;
        gpu.upload(points.as_flattened(), &mut p)?;
        let mut out = gpu.alloc::<f64>(n)?;
        let n_i = n as i64;
        launch!(
            gpu,
            "winding_values",
            winding_grid(n),
            &p,
            &n_i,
            &mesh.nodes,
            &mesh.tris,
            &mesh.far,
            &mesh.n_nodes,
            &beta2,
            &mut out
        )?;
        let mut host = vec![0.0f64; n];
        gpu.download(&out.slice(0..n), &mut host)?;
        Ok(host)
    }

    pub(super) fn timing_event(&self) -> crate::Result<cudarc::driver::CudaEvent> {
        self.gpu
            .stream
            .record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_error("recording an event", e))
    }
}
