//! The group coordinator.

pub mod group;
pub mod storage;
