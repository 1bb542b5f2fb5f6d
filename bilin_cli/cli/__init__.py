"""The command line: parsing options and handing library results to the renderer."""
