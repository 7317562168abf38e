"""Data for the device simulator (toolchain/sim/): the sample ToF sequences and their generator
(`python -m device_sim.make_sequences`), plus `python -m device_sim`, a thin consumer of the library."""
