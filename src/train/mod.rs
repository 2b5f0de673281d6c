//! Losses, Adam and schedules, metrics.

pub mod adam;
pub mod fit;
pub mod image_metrics;
pub mod loss;
pub mod loss_log;
pub mod memory;
pub mod metrics;
pub mod regularise;
pub mod run;
pub mod schedule;
pub mod sigma;

pub use adam::{Adam, AdamState};
pub use loss::Loss;
pub use run::FitOptions;
pub use schedule::LrSchedule;
