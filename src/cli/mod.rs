//! The command line: its flags ([`args`]) and how they become a job's config ([`resolve`]).

pub mod args;
pub mod resolve;
