//! vcpu-sched (not written yet)
#![no_std]
#![forbid(unsafe_code)]
