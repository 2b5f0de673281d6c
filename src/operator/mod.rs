//! A and Aᵀ: the linear measurement operators (DESIGN.md): ray integrals for CT (`ray`, with the
//! scan geometry in `ct_geometry`) and the masked 3-D FFT of the MRI job (`fft`).

pub mod ct_geometry;
pub mod fft;
pub mod ray;

/// The grid loss a job runs: on the backend's device when it has one, `[device] gpu_operator` is
/// on and the device version can be made (`make_device`, given whether the step should be
/// device-resident), else on the host (`host`). Returns the loss, whether the step is
/// device-resident, and a line for the run log saying what runs it and why.
pub fn choose_grid_loss<'a>(
    backend: &mut dyn crate::backend::Backend,
    device: &crate::config::DeviceConfig,
    make_device: impl FnOnce(&mut dyn crate::backend::DeviceJobs, bool) -> crate::Result<Box<dyn GridLoss>>,
    host: impl FnOnce() -> Box<dyn GridLoss + 'a>,
) -> (Box<dyn GridLoss + 'a>, bool, String) {
    let why = match backend.device_jobs() {
        None => "the network runs on the CPU".to_string(),
        Some(_) if !device.gpu_operator => "[device] gpu_operator = false".to_string(),
        Some(jobs) => match make_device(jobs, device.resident) {
            Ok(op) => {
                let what = op.describe();
                return (op, device.resident, what);
            }
            Err(e) => format!("the device operator could not be made ({e})"),
        },
    };
    let op = host();
    let what = format!("{}: {why}", op.describe());
    (op, false, what)
}

/// A full-grid measurement operator with its measured data, wherever it runs (the host's
/// [`fft::KspaceLoss`] and [`ray::RayLoss`], or their GPU twins made by
/// [`crate::backend::DeviceJobs`]): for a field σ(z) evaluated at every voxel, the loss of A σ(z)
/// against the data and its gradient ∂L/∂z, through Aᵀ and the chain rule through σ.
pub trait GridLoss {
    /// What runs it, for the run log.
    fn describe(&self) -> String;

    /// The loss of σ(`z`) and ∂L/∂z into `dz` (both one value per voxel).
    fn sigmoid_loss_and_gradient(&mut self, z: &[f32], dz: &mut [f32]) -> crate::Result<f64>;

    /// Sets the ramp weight β of a ramp-weighted loss (`train.ramp_final`'s schedule); an error
    /// for operators without one.
    fn set_ramp_weight(&mut self, _beta: f64) -> crate::Result<()> {
        Err(crate::Error::Config(format!("{}: has no ramp-weighted loss", self.describe())))
    }

    /// σ(z) of the last step, into `out` (the CT PSNR curve); an error for operators that do not
    /// keep it.
    fn image(&mut self, _out: &mut Vec<f32>) -> crate::Result<()> {
        Err(crate::Error::Config(format!("{}: keeps no image", self.describe())))
    }

    /// The device object behind a GPU operator, for the backend that made it (its
    /// device-resident step); `None` on the host.
    fn device_part(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}
