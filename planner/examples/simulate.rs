//! Cost simulator (written below).
fn main() {}
