//! Memory plans: what a job will allocate, on the host and on the GPU, printed and checked
//! against a limit before the job allocates it, so a run that cannot fit says so and stops
//! instead of being killed by the kernel.
//!
//! The limit is `--max-memory` (e.g. `2G`, `512M`, `1.5GiB`, plain bytes) or, by default, what
//! the machine can give now: `MemAvailable` (and the cgroup's `memory.max` less its
//! `memory.current`, when that is smaller) less a margin. On a GPU the limit is the device's free
//! memory less a margin.
//!
//! Full-grid jobs (MRI, CT on the grid) evaluate and back-propagate the field in chunks
//! ([`crate::train::fit::LoopSpec::chunk`]) when the activations of the whole grid would not fit
//! in [`NETWORK_BUDGET`]: the plan's working set is then the chunk's, not the grid's.

use crate::{Error, Result};

/// Bytes the network's forward and backward may take before a full-grid step is chunked.
pub const NETWORK_BUDGET: u64 = 512 << 20;

/// The smallest chunk a full-grid step is cut into (points).
const MIN_CHUNK: usize = 4096;

/// Where an allocation lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Host,
    Device,
}

/// What a job will allocate, item by item.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    job: String,
    items: Vec<(String, u64, Place)>,
}

/// The limits a plan is checked against.
#[derive(Clone, Debug)]
pub struct MemoryLimits {
    /// Host bytes, and where the figure came from.
    pub host: (u64, String),
    /// Device bytes, when the job runs on a GPU.
    pub device: Option<(u64, String)>,
}

impl MemoryPlan {
    pub fn new(job: &str) -> Self {
        MemoryPlan { job: job.to_string(), items: vec![] }
    }

    /// Adds a host allocation of `bytes` (a zero-byte item is left out).
    pub fn host(&mut self, what: impl Into<String>, bytes: u64) -> &mut Self {
        self.add(what, bytes, Place::Host)
    }

    /// Adds a device allocation.
    pub fn device(&mut self, what: impl Into<String>, bytes: u64) -> &mut Self {
        self.add(what, bytes, Place::Device)
    }

    pub fn add(&mut self, what: impl Into<String>, bytes: u64, place: Place) -> &mut Self {
        if bytes > 0 {
            self.items.push((what.into(), bytes, place));
        }
        self
    }

    /// The total on one side (saturating: a plan of absurd sizes still compares as too large).
    pub fn total(&self, place: Place) -> u64 {
        self.items.iter().filter(|i| i.2 == place).fold(0u64, |s, i| s.saturating_add(i.1))
    }

    /// One line per side: `host 1.21 GiB (grid points 104 MB, …)`.
    pub fn describe(&self) -> String {
        let mut out = format!("memory plan ({}):", self.job);
        for (place, name) in [(Place::Host, "host"), (Place::Device, "gpu")] {
            let items: Vec<String> = self
                .items
                .iter()
                .filter(|i| i.2 == place)
                .map(|(what, bytes, _)| format!("{what} {}", format_bytes(*bytes)))
                .collect();
            if items.is_empty() {
                continue;
            }
            out.push_str(&format!("\n  {name} {}: {}", format_bytes(self.total(place)), items.join(", ")));
        }
        out
    }

    /// An error naming the side, its total, the limit and the largest items when the plan does
    /// not fit.
    pub fn check(&self, limits: &MemoryLimits) -> Result<()> {
        let sides =
            [(Place::Host, "host", Some(&limits.host)), (Place::Device, "GPU", limits.device.as_ref())];
        for (place, name, limit) in sides {
            let Some((limit, from)) = limit else { continue };
            let total = self.total(place);
            if total <= *limit {
                continue;
            }
            let mut items: Vec<&(String, u64, Place)> = self.items.iter().filter(|i| i.2 == place).collect();
            items.sort_by(|a, b| b.1.cmp(&a.1));
            let largest: Vec<String> =
                items.iter().take(3).map(|(w, b, _)| format!("{w} {}", format_bytes(*b))).collect();
            return Err(Error::Memory(format!(
                "{}: needs {} of {name} memory but {} is available ({from}); largest: {}. \
                 Use a smaller grid or network, or raise --max-memory if the figure is wrong",
                self.job,
                format_bytes(total),
                format_bytes(*limit),
                largest.join(", ")
            )));
        }
        Ok(())
    }
}

/// The command line's `--max-memory` for code that has no [`crate::train::FitOptions`] (the
/// exports); 0 = not given.
static MAX_MEMORY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the limit [`MemoryLimits::new`] uses when it is given none (the CLI's `--max-memory`).
pub fn set_max_memory(bytes: Option<u64>) {
    MAX_MEMORY.store(bytes.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
}

/// Checks an export's plan (`items`: what, bytes on the host) against the host's limit.
pub fn check_export(what: &str, items: &[(&str, u64)]) -> Result<()> {
    let mut plan = MemoryPlan::new(what);
    for &(w, b) in items {
        plan.host(w, b);
    }
    plan.check(&MemoryLimits::new(None, None))
}

impl MemoryLimits {
    /// `max_memory` when given (else the CLI's, [`set_max_memory`]), else what the machine has
    /// now less a margin; the device's limit when `device_free` is known.
    pub fn new(max_memory: Option<u64>, device_free: Option<u64>) -> Self {
        let global = MAX_MEMORY.load(std::sync::atomic::Ordering::Relaxed);
        let max_memory = max_memory.or((global > 0).then_some(global));
        let host = match max_memory {
            Some(b) => (b, "--max-memory".to_string()),
            None => match host_available() {
                Some(avail) => {
                    (avail.saturating_sub(margin(avail)), "what the machine has free, less a margin".into())
                }
                None => (u64::MAX, "no limit known".into()),
            },
        };
        let device =
            device_free.map(|f| (f.saturating_sub(margin(f)), "free GPU memory, less a margin".to_string()));
        MemoryLimits { host, device }
    }
}

/// A safety margin: 5 % of `bytes`, at least 256 MiB (and at most half of it).
fn margin(bytes: u64) -> u64 {
    (bytes / 20).max(256 << 20).min(bytes / 2)
}

/// Memory the host can give now: `MemAvailable`, or less when this process's cgroup has a
/// lower limit. `None` where neither can be read.
pub fn host_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    let cgroup = || -> Option<u64> {
        let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok();
        let max = read("memory.max")?.trim().parse::<u64>().ok()?; // "max" = no limit
        let current = read("memory.current")?.trim().parse::<u64>().ok()?;
        Some(max.saturating_sub(current))
    };
    match (meminfo, cgroup()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Bytes of the CPU backend's forward and backward per point: the encoded features, every
/// layer's outputs and two ∂L/∂Z buffers of the widest layer, in f32.
pub fn network_bytes_per_point(sizes: &[usize]) -> u64 {
    let features = sizes.first().copied().unwrap_or(0);
    let outputs: usize = sizes.iter().skip(1).sum();
    let widest = sizes.iter().skip(1).copied().max().unwrap_or(0).max(features);
    4 * (features + outputs + 2 * widest) as u64
}

/// The chunk a full-grid step of `n` points is evaluated in: `None` (all at once) when its
/// working set fits in `budget`, else the largest multiple of [`MIN_CHUNK`] points that does.
pub fn choose_chunk(n: usize, bytes_per_point: u64, budget: u64) -> Option<usize> {
    if (n as u64).saturating_mul(bytes_per_point) <= budget {
        return None;
    }
    let fit = (budget / bytes_per_point.max(1)) as usize;
    Some((fit / MIN_CHUNK * MIN_CHUNK).max(MIN_CHUNK).min(n))
}

/// Parses `2G`, `512M`, `1.5GiB`, `800k`, `1e9` (bytes): the suffixes are powers of 1024.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 =
        num.trim().parse().map_err(|_| format!("{s:?} is not a size (e.g. 2G, 512M, 1.5GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024f64.powi(2),
        "g" | "gb" | "gib" => 1024f64.powi(3),
        "t" | "tb" | "tib" => 1024f64.powi(4),
        u => return Err(format!("{s:?}: unknown unit {u:?} (use k, M, G or T)")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is not a usable memory size"));
    }
    Ok(bytes as u64)
}

/// `104.9 MB`-style text (powers of 1024: KiB, MiB, GiB).
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// The network's layer sizes for `common` on `dim`-D points, for a plan made before the
/// network is built.
pub fn network_sizes(common: &crate::config::Common, dim: usize) -> Vec<usize> {
    use crate::encoding::Encoding;
    let features = Encoding::build(&common.encoding, dim, &crate::sample::CounterRng::new(0, 0)).n_features();
    crate::model::Mlp::sizes_for(features, &common.model, 1)
}

/// Bytes of an encoding's trainable tables (the hash grid's) with their gradients and two Adam
/// moments: 16 per float; 0 for the fixed mappings.
pub fn table_bytes(common: &crate::config::Common, dim: usize) -> u64 {
    use crate::encoding::Encoding;
    let e = Encoding::build(&common.encoding, dim, &crate::sample::CounterRng::new(0, 0));
    bytes(e.table_len(), 16)
}

/// Points a backend's `predict` evaluates at a time (the larger of the backends').
const PREDICT_CHUNK: usize = 1 << 16;

/// The host side of a full-grid step of `n` `dim`-D points through a network of layer `sizes`,
/// `chunk` points at a time (`None`: all at once): the points, the outputs and ∂L/∂z, and the
/// network's working set for training and for predictions.
pub fn grid_step(plan: &mut MemoryPlan, n: usize, dim: usize, sizes: &[usize], chunk: Option<usize>) {
    let per_point = network_bytes_per_point(sizes);
    plan.host("grid points", bytes(n, 4 * dim)).host("outputs and ∂L/∂z", bytes(n, 8));
    let rows = chunk.unwrap_or(n);
    let what = match chunk {
        Some(c) => format!("network ({c}-point chunks)"),
        None => "network (whole grid)".to_string(),
    };
    plan.host(what, bytes(rows, 1).saturating_mul(per_point));
    plan.host("network (predictions)", bytes(n.min(PREDICT_CHUNK), 1).saturating_mul(per_point));
}

/// The device side of a device-resident full-grid step (the grid's points, outputs and ∂L/∂z
/// and the whole grid's activations on the device, fp16 keeping a half-size copy of them).
pub fn resident_grid_step(plan: &mut MemoryPlan, n: usize, dim: usize, sizes: &[usize], fp16: bool) {
    let per_point = network_bytes_per_point(sizes);
    let per_point = if fp16 { per_point + per_point / 2 } else { per_point };
    plan.device("grid points", bytes(n, 4 * dim))
        .device("outputs and ∂L/∂z", bytes(n, 8))
        .device("network (whole grid)", bytes(n, 1).saturating_mul(per_point));
}

/// The device side of a chunked step: one chunk's activations (the grid stays on the host).
pub fn chunked_device_step(plan: &mut MemoryPlan, chunk: usize, sizes: &[usize], fp16: bool) {
    let per_point = network_bytes_per_point(sizes);
    let per_point = if fp16 { per_point + per_point / 2 } else { per_point };
    let rows = chunk.max(PREDICT_CHUNK);
    plan.device(format!("network ({chunk}-point chunks)"), bytes(rows, 1).saturating_mul(per_point));
}

/// A full-grid job's step on a GPU with `free` bytes free: device-resident when the whole grid's
/// step fits (and `[device] resident` is on, and no `--chunk` was asked for), else chunked with the
/// grid on the host; an error when not even that fits. `operator` names the device operator's
/// buffers and their size. Prints the plan it picks. Returns (resident, chunk).
pub fn device_grid_plan(
    job: &str,
    (n, dim, sizes): (usize, usize, &[usize]),
    operator: (&str, u64),
    device: &crate::config::DeviceConfig,
    chunk: Option<usize>,
    free: u64,
    opts: &crate::train::FitOptions,
) -> Result<(bool, Option<usize>)> {
    use crate::train::run::log;
    let fp16 = device.precision == crate::config::Precision::Fp16;
    let limits = opts.memory_limits(Some(free));
    if device.resident && opts.chunk.is_none() {
        let mut plan = MemoryPlan::new(&format!("{job} (device-resident)"));
        resident_grid_step(&mut plan, n, dim, sizes, fp16);
        plan.device(operator.0, operator.1);
        match plan.check(&limits) {
            Ok(()) => {
                log(opts, &plan.describe());
                return Ok((true, None));
            }
            Err(e) => log(opts, &format!("device-resident step off: {e}")),
        }
    }
    let chunk = chunk.or_else(|| opts.grid_chunk(n, sizes)).unwrap_or(n);
    let mut plan = MemoryPlan::new(&format!("{job} (chunked on the GPU)"));
    chunked_device_step(&mut plan, chunk, sizes, fp16);
    plan.device(operator.0, operator.1);
    log(opts, &plan.describe());
    plan.check(&limits)?;
    Ok((false, (chunk < n).then_some(chunk)))
}

/// `count × size` in bytes, saturating (sizes from inputs never wrap).
pub fn bytes(count: usize, size: usize) -> u64 {
    (count as u64).saturating_mul(size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1e9"), Ok(1_000_000_000));
        assert_eq!(parse_size(" 800 kB"), Ok(800 * 1024));
        for bad in ["", "G", "-1G", "0", "2X", "inf", "nan", "1e30T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 << 29), "1.50 GiB");
    }

    #[test]
    fn chunks_only_when_the_grid_does_not_fit() {
        assert_eq!(choose_chunk(1000, 4000, 8_000_000), None);
        assert_eq!(choose_chunk(1_000_000, 4000, 512 << 20), Some(131_072));
        // never below the minimum, never above the grid
        assert_eq!(choose_chunk(1_000_000, 1 << 30, 512 << 20), Some(MIN_CHUNK));
        assert_eq!(choose_chunk(5000, 1 << 20, 1 << 20), Some(4096));
        // 4 × 128 on 256 features: 256 + 385 + 512 floats a point
        assert_eq!(network_bytes_per_point(&[256, 128, 128, 128, 1]), 4 * (256 + 385 + 512));
    }

    #[test]
    fn a_plan_over_the_limit_names_what_it_needs() {
        let mut plan = MemoryPlan::new("mri");
        plan.host("k-space", 3 << 30).host("grid points", 1 << 30).device("nothing", 0);
        assert_eq!(plan.total(Place::Host), 4 << 30);
        assert_eq!(plan.total(Place::Device), 0);
        let ok = MemoryLimits { host: (5 << 30, "test".into()), device: None };
        plan.check(&ok).unwrap();
        let tight = MemoryLimits { host: (2 << 30, "--max-memory".into()), device: None };
        let e = plan.check(&tight).unwrap_err().to_string();
        assert!(e.contains("needs 4.00 GiB of host memory but 2.00 GiB is available (--max-memory)"), "{e}");
        assert!(e.contains("largest: k-space 3.00 GiB, grid points 1.00 GiB"), "{e}");
        let text = plan.describe();
        assert!(
            text.contains("host 4.00 GiB: k-space 3.00 GiB, grid points 1.00 GiB") && !text.contains("gpu")
        );
        // a device side is checked when known
        plan.device("activations", 10 << 30);
        let small_gpu = MemoryLimits { host: (5 << 30, "t".into()), device: Some((8 << 30, "free".into())) };
        assert!(plan.check(&small_gpu).unwrap_err().to_string().contains("of GPU memory"));
        assert!(host_available().is_some_and(|b| b > 0));
    }
}
