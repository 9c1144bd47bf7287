//! xDS: the ADS client and the conversion of xDS resources into the proxy's config types.

pub mod client;
pub mod convert;
