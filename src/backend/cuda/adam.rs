//! Adam on the device (`cuda/adam.cu`): fp32 master weights and moments; in fp16 the same pass
//! writes the fp16 weight copy the products read, and the graph-replayed step reads its learning
//! rate and bias corrections from device memory.

use super::backend::CudaBackend;
use super::buffers::missing;
use super::grid;
use cudarc::driver::PushKernelArg;

impl CudaBackend {
    /// [`crate::backend::Backend::optimizer_step`]: one Adam step at `lr` with the bias
    /// corrections of the next step; fp16 also writes the fp16 weight copy in the same pass.
    pub(super) fn adam_step(&mut self, lr: f32) -> crate::Result<()> {
        self.step += 1;
        let (c1, c2) = self.adam_corrections(self.step);
        let n = self.params.len() as i64;
        let (b1, b2, eps) = (self.adam.beta1, self.adam.beta2, self.adam.eps);
        let gpu = &self.gpu;
        if self.fp16() {
            // the fp16 copy of the weights in the same pass
            let p16 = self.params16.as_mut().ok_or_else(missing)?;
            return launch!(
                gpu,
                "adam_step_h",
                grid(n as usize),
                &mut self.params,
                &self.grads,
                &mut self.moment1,
                &mut self.moment2,
                &n,
                &lr,
                &b1,
                &b2,
                &eps,
                &c1,
                &c2,
                p16
            );
        }
        launch!(
            gpu,
            "adam_step",
            grid(n as usize),
            &mut self.params,
            &self.grads,
            &mut self.moment1,
            &mut self.moment2,
            &n,
            &lr,
            &b1,
            &b2,
            &eps,
            &c1,
            &c2
        )
    }

    /// The fp16 step as a captured CUDA graph replays it (`adam_step_h_dev`): the learning rate
    /// and bias corrections come from the graph state's `hyper`, which the host writes before
    /// each launch.
    pub(super) fn adam_step_from_device(&mut self) -> crate::Result<()> {
        let len = self.params.len() as i64;
        let (b1, b2, eps) = (self.adam.beta1, self.adam.beta2, self.adam.eps);
        let gpu = &self.gpu;
        let hyper = self.graph.hyper.as_ref().ok_or_else(missing)?;
        let p16 = self.params16.as_mut().ok_or_else(missing)?;
        launch!(
            gpu,
            "adam_step_h_dev",
            grid(len as usize),
            &mut self.params,
            &self.grads,
            &mut self.moment1,
            &mut self.moment2,
            &len,
            hyper,
            &b1,
            &b2,
            &eps,
            p16
        )
    }

    /// Adam's bias corrections 1/(1 − β1^t), 1/(1 − β2^t) of step `t`, exactly as
    /// src/train/adam.rs computes them.
    pub(super) fn adam_corrections(&self, t: u64) -> (f32, f32) {
        let t = t as i32;
        let c1 = 1.0 / (1.0 - (self.adam.beta1 as f64).powi(t)) as f32;
        let c2 = 1.0 / (1.0 - (self.adam.beta2 as f64).powi(t)) as f32;
        (c1, c2)
    }

    /// fp16: the fp16 weight copy from the fp32 weights (after construction or `set_state`).
    pub(super) fn refresh_params16(&mut self) -> crate::Result<()> {
        if let Some(p16) = &mut self.params16 {
            self.gpu.to_f16(&self.params.as_view(), &mut p16.as_view_mut())?;
        }
        Ok(())
    }
}
