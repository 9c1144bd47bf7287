//! One module per subcommand.

pub mod agent;
pub mod capture;
pub mod control_plane;
pub mod dashboard;
pub mod demo;
pub mod echo;
pub mod pods;
pub mod proxy;
pub mod token;
pub mod validate;
