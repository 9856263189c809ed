"""``python -m art_adr.cli`` (also what ``torchrun -m art_adr.cli train ...`` runs)."""

from art_adr.cli import main

main()
