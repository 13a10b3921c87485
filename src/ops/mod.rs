//! Commands over an open repository.
