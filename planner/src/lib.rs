//! Pure decisions for zib: the price table and cost model, full vs incremental,
//! consolidation, and the multi-month restore schedule.
//!
//! No I/O, no async runtime, no clock: `now`, prices and the catalog are inputs, and
//! every decision comes back with its reason and its cost.
