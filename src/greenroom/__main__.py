"""``python -m greenroom`` runs the ``greenroom`` command."""

from greenroom.cli import main

main()
