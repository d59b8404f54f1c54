"""`python -m vizsla` (also what `torchrun -m vizsla` runs)."""

from vizsla.cli.app import main

main()
