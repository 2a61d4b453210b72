//! Tests of the TURN server: unit tests per answer, the peer policy table, a seeded
//! simulation on a virtual clock, mutation and allocation-count checks.

mod alloc;
mod kit;
mod policy;
mod sim;
mod unit;
