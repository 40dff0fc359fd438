//! Examples of assembling x0tta6bl4 nodes; see `examples/README.md`. The programs are cargo
//! examples: `cargo run -p x0tta-examples --example custom_node`.
