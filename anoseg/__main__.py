"""``python -m anoseg``: the same CLI as the ``anoseg`` command."""

from anoseg.cli import main

if __name__ == "__main__":
    main(prog_name="anoseg")
