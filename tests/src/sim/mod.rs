//! The simulator: many nodes of the real client core and server in simulated time, seeded, so a
//! day at default poll intervals runs in well under a second (the binary `ntp-sim`).
//!
//! - [`clock`]: an oscillator with frequency error and random-walk wander, corrected through the
//!   same `SoftClock` model as the daemon's virtual clock.
//! - [`net`]: one-way delays per direction (exponential, sums of exponentials, Pareto), loss,
//!   duplication; reordering follows from independent delays.
//! - [`world`]: scenarios (nodes, their sources, links, names) and the event loop that drives
//!   `ntp_proto::Client` exactly as the daemon's sync loop does.
//! - [`measure`]: the figures, measured as chrony's own simulation tests measure them.
//! - [`plot`]: the error of every client against true time, as SVG.
//! - [`compare`]: the comparison with chronyd under the conditions of its published figures.
//! - [`chrony_tests`]: chrony's own simulation tests (clknetsim), ported with their limits.

pub mod broadcast;
pub mod chrony_tests;
pub mod clock;
pub mod compare;
pub mod leap;
pub mod measure;
pub mod net;
pub mod peers;
pub mod plot;
pub mod world;
