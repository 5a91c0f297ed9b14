//! Sans-IO protocol cores. Each takes bytes and returns replies and events;
//! none touches a socket, a clock or a disk. `net::driver` runs them.

pub mod pop3;
pub mod smtp;
