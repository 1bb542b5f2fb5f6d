"""Turning plain results into what users see: tables, JSON/CSV/npz
(:mod:`bilin_cli.render.output`), terminal text (``views*``), figures
(``plotting*``, :mod:`bilin_cli.render.figures`) and the HTML report."""
