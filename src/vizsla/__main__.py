"""`python -m vizsla` (also what `torchrun -m vizsla` runs)."""

from vizsla.cli.entry import main

main()
