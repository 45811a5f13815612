"""``python -m greenroom`` and the ``greenroom`` command.

Kept light on purpose: multiprocessing's spawn (the ingestion parser's worker processes) imports
the main module again in each worker, and ``greenroom.cli`` brings the whole server (32 MiB and
half a second more per worker for nothing).
"""


def run() -> None:
    """Run the ``greenroom`` command."""
    from greenroom.memory import kept_for_good

    with kept_for_good():  # most of start-up's imports
        from greenroom.cli import main

    main()


if __name__ == "__main__":
    run()
