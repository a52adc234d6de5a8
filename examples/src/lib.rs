//! Examples of embedding zib (see the `examples/` folder of this package).
