//! The Fourier-feature encoder on the device (`cuda/encoding.cu`): fp32 features, or fp16
//! features written directly (the fp16 path keeps no fp32 copy).

use super::backend::CudaBackend;
use super::buffers::{missing, Buffers};
use super::grid;
use crate::backend::Backend;
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

impl CudaBackend {
    /// Encodes `bufs.points[..n]` into `bufs.features` (fp32) or `bufs.features16` (fp16).
    pub(super) fn encode_device(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        if self.fp16() {
            return self.encode_fp16(bufs, n);
        }
        let f = self.encoding.n_features();
        let pts = bufs.points.slice(0..n * self.encoding.dim);
        self.encode_f32(&pts, n, &mut bufs.features.slice_mut(0..n * f))
    }

    /// The fp32 encoder into `feats` (n × features).
    pub(super) fn encode_f32(
        &self,
        pts: &CudaView<f32>,
        n: usize,
        feats: &mut CudaViewMut<f32>,
    ) -> crate::Result<()> {
        let gpu = &self.gpu;
        let enc = &self.encoding;
        if enc.identity {
            let len = (n * enc.dim) as i64;
            launch!(gpu, "encode_identity", grid(n * enc.dim), pts, &len, feats)
        } else {
            let (n_i, d, m) = (n as i32, enc.dim as i32, enc.frequencies() as i32);
            launch!(
                gpu,
                "encode_fourier",
                grid(n * enc.frequencies()),
                pts,
                &self.frequencies,
                &n_i,
                &d,
                &m,
                &enc.scale,
                feats
            )
        }
    }

    /// fp16: encodes `bufs.points[..n]` straight into the fp16 features.
    pub(super) fn encode_fp16(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        let gpu = &self.gpu;
        let enc = &self.encoding;
        let f = enc.n_features();
        let pts = bufs.points.slice(0..n * enc.dim);
        let mut feats = bufs.features16.as_mut().ok_or_else(missing)?.slice_mut(0..n * f);
        if enc.identity {
            let len = (n * enc.dim) as i64;
            launch!(gpu, "encode_identity_h", grid(n * enc.dim), &pts, &len, &mut feats)
        } else {
            let (n_i, d, m) = (n as i32, enc.dim as i32, enc.frequencies() as i32);
            launch!(
                gpu,
                "encode_fourier_h",
                grid(n * enc.frequencies()),
                &pts,
                &self.frequencies,
                &n_i,
                &d,
                &m,
                &enc.scale,
                &mut feats
            )
        }
    }

    /// The features of `points` computed on the device (for parity tests of the encoder).
    pub fn encode(&mut self, points: &[f32]) -> crate::Result<Vec<f32>> {
        let n = self.check_points(points, "encode")?;
        Self::ensure(&mut self.infer, &self.gpu, n, self.encoding.dim, &self.layers, false, self.precision)?;
        let mut bufs = self.infer.take().ok_or_else(missing)?;
        // always the fp32 encoder (fp16 keeps only fp16 features): the check of the formula
        let r = (|| {
            self.gpu.upload(points, &mut bufs.points)?;
            let f = self.encoding.n_features();
            let mut feats = self.gpu.alloc::<f32>(n * f)?;
            self.encode_f32(&bufs.points.slice(0..n * self.encoding.dim), n, &mut feats.slice_mut(0..n * f))?;
            let mut out = vec![0.0; n * f];
            self.gpu.download(&feats.slice(0..n * f), &mut out)?;
            Ok(out)
        })();
        self.infer = Some(bufs);
        r
    }

    /// Uploads host points into the inference buffers, for timing [`Self::encode_staged`].
    pub fn stage_points(&mut self, points: &[f32]) -> crate::Result<usize> {
        let n = self.check_points(points, "stage_points")?;
        Self::ensure(&mut self.infer, &self.gpu, n, self.encoding.dim, &self.layers, false, self.precision)?;
        let bufs = self.infer.as_mut().ok_or_else(missing)?;
        self.gpu.upload(points, &mut bufs.points)?;
        Ok(n)
    }

    /// Encodes the first `n` staged points on the device and waits for it (benchmark of the
    /// device encoder alone).
    pub fn encode_staged(&mut self, n: usize) -> crate::Result<()> {
        let mut bufs = self.infer.take().ok_or_else(missing)?;
        let r = if n > bufs.cap {
            Err(crate::Error::Input("encode_staged: more points than staged".into()))
        } else {
            self.encode_device(&mut bufs, n)
        };
        self.infer = Some(bufs);
        r?;
        self.synchronize()
    }
}
