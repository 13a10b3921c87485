//! What a snapshot reads: filesystem entries turned into tree nodes, streams (stdin, a
//! command's output) read in bounded windows, and the commands that produce them.

pub mod command;
pub mod fs;
pub mod sqlite;
pub mod stream;
