"""``python -m enet`` (and ``torchrun -m enet``) run the CLI."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
