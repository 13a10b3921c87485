//! What a snapshot reads: filesystem entries turned into tree nodes, and streams (stdin, a
//! command's output) read in bounded windows.

pub mod fs;
pub mod stream;
