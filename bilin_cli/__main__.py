"""``python -m bilin_cli``: the same entry point as the ``bilin`` console script."""

from bilin_cli.cli.entry import main

main()
