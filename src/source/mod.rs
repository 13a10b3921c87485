//! What a snapshot reads.
