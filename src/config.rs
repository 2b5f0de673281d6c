//! Run configuration (to be written)
