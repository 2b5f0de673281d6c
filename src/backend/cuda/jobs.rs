//! [`DeviceJobs`] for the CUDA backend: the occupancy batches on the device (the uploaded mesh
//! kept in the backend), the grid operators (cuFFT k-space, the ray projector) and the
//! device-resident grid step, so the jobs never name the CUDA backend.

use super::backend::CudaBackend;
use super::operator::{GpuKspaceOperator, GpuProjector};
use crate::backend::{BatchParams, DeviceJobs, StepReport};
use crate::geometry::winding::WindingNumber;
use crate::geometry::TriMesh;
use crate::operator::ct_geometry::Scan;
use crate::operator::fft::{MaskedFft, C64};
use crate::operator::ray::RayProjector;
use crate::operator::GridLoss;
use crate::sample::Aabb;
use crate::train::loss::{sigmoid, through_sigmoid};
use crate::{Error, Result};

impl GridLoss for GpuKspaceOperator {
    fn describe(&self) -> String {
        GpuKspaceOperator::describe(self)
    }

    fn sigmoid_loss_and_gradient(&mut self, z: &[f32], dz: &mut [f32]) -> Result<f64> {
        GpuKspaceOperator::sigmoid_loss_and_gradient(self, z, dz)
    }

    fn device_part(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

/// The GPU projector as `fit ct`'s grid loss: σ and the chain rule on the host around A and Aᵀ
/// on the device (host-data steps), or everything on the device (resident steps), with the image
/// kept for the PSNR curve.
pub struct GpuRayLoss {
    gpu: GpuProjector,
    image: Vec<f32>,
    back: Vec<f32>,
    /// The last image is on the device (a resident step ran), not in `image`.
    image_on_device: bool,
}

impl GridLoss for GpuRayLoss {
    fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn sigmoid_loss_and_gradient(&mut self, z: &[f32], dz: &mut [f32]) -> Result<f64> {
        self.image.clear();
        self.image.extend(z.iter().map(|&v| sigmoid(v)));
        self.back.resize(self.image.len(), 0.0);
        let loss = self.gpu.loss_and_gradient(&self.image, &mut self.back)?;
        for ((d, &g), &p) in dz.iter_mut().zip(&self.back).zip(&self.image) {
            *d = through_sigmoid(g, p);
        }
        self.image_on_device = false;
        Ok(loss as f64)
    }

    fn image(&mut self, out: &mut Vec<f32>) -> Result<()> {
        if self.image_on_device {
            out.resize(self.gpu.n_voxels(), 0.0);
            return self.gpu.image(out);
        }
        out.clear();
        out.extend_from_slice(&self.image);
        Ok(())
    }

    fn device_part(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

impl DeviceJobs for CudaBackend {
    fn upload_mesh(&mut self, winding: &WindingNumber, mesh: &TriMesh, bbox: Aabb) -> Result<()> {
        self.occupancy_mesh = Some(CudaBackend::upload_mesh(self, winding, mesh, bbox)?);
        Ok(())
    }

    fn label_points(&mut self, points: &[[f32; 3]]) -> Result<(Vec<f32>, f64)> {
        let mesh = self.occupancy_mesh.as_ref().ok_or_else(no_mesh)?;
        CudaBackend::label_points(self, mesh, points)
    }

    fn occupancy_step(&mut self, params: &BatchParams, lr: f32, slot: usize) -> Result<()> {
        let mesh = self.occupancy_mesh.take().ok_or_else(no_mesh)?;
        let r = CudaBackend::occupancy_step(self, &mesh, params, lr, slot);
        self.occupancy_mesh = Some(mesh);
        r
    }

    fn read_steps(&mut self, n: usize) -> Result<StepReport> {
        CudaBackend::read_steps(self, n)
    }

    fn kspace_operator(
        &mut self,
        op: &MaskedFft,
        measured: &[C64],
        resident: bool,
    ) -> Result<Box<dyn GridLoss>> {
        let made = if resident {
            GpuKspaceOperator::on_stream(op, measured, self.stream())
        } else {
            GpuKspaceOperator::new(op, measured)
        };
        Ok(Box::new(made.map_err(|reason| Error::Config(format!("cuFFT is not usable: {reason}")))?))
    }

    fn ray_operator(
        &mut self,
        scan: &Scan,
        projector: &RayProjector,
        measured: &[f32],
        resident: bool,
    ) -> Result<Box<dyn GridLoss>> {
        let mut gpu = if resident {
            GpuProjector::on_stream(scan, projector, self.stream())?
        } else {
            GpuProjector::new(scan, projector)?
        };
        gpu.set_measured(measured)?;
        Ok(Box::new(GpuRayLoss { gpu, image: vec![], back: vec![], image_on_device: false }))
    }

    fn resident_step(&mut self, op: &mut dyn GridLoss, points: &[f32]) -> Result<f64> {
        let not_here =
            || Error::Config("resident_step: the operator was not made by this CUDA backend".into());
        let any = op.device_part().ok_or_else(not_here)?;
        if !self.has_resident_points() {
            self.set_resident_points(points)?;
        }
        if let Some(k) = any.downcast_mut::<GpuKspaceOperator>() {
            let z = self.forward_resident()?;
            let (loss, max_abs) = k.sigmoid_loss_and_gradient_device(&z)?;
            self.backward_device_grad(&k.gradient(), max_abs)?;
            return Ok(loss);
        }
        if let Some(r) = any.downcast_mut::<GpuRayLoss>() {
            let z = self.forward_resident()?;
            let (loss, max_abs) = r.gpu.sigmoid_loss_and_gradient_device(&z)?;
            self.backward_device_grad(&r.gpu.gradient(), max_abs)?;
            r.image_on_device = true;
            return Ok(loss as f64);
        }
        Err(not_here())
    }

    fn stage_points(&mut self, points: &[f32]) -> Result<()> {
        CudaBackend::stage_points(self, points).map(|_| ())
    }

    fn encode_staged(&mut self, n: usize) -> Result<()> {
        CudaBackend::encode_staged(self, n)
    }
}

fn no_mesh() -> Error {
    Error::Config("device occupancy batches: no mesh uploaded (upload_mesh first)".into())
}
