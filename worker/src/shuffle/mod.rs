//! The key-group shuffle between the workers of a job: the wire format ([`codec`]) and the
//! connections with their flow control ([`net`]). A worker's own key groups never cross
//! it: the runtime hands those records to its operator in process.

pub mod codec;
pub mod net;
