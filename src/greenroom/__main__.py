"""``python -m greenroom`` runs the ``greenroom`` command."""

from greenroom.cli import main

# Guarded: worker processes (the ingestion parser's) import the main module again.
if __name__ == "__main__":
    main()
