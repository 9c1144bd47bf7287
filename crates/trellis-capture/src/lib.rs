//! Transparent traffic capture, as Istio's init container does it: iptables rules that send a
//! pod's outbound TCP to the proxy's port 15001 and its inbound TCP to 15006 (leaving the
//! proxy's own traffic alone), the original destination of a captured connection, and network
//! namespaces to run "pods" in on one machine.

pub mod iptables;
pub mod netns;
mod original_dst;
pub mod pods;

pub use iptables::{CaptureConfig, CaptureError, Cidr, Family};
pub use netns::{Netns, NetnsError};
pub use original_dst::original_dst;
pub use pods::{Pod, PodNetwork};
