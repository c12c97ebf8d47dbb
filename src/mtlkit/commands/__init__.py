"""CLI sub-commands beyond bench/datasets/methods, one module each (registered in `mtlkit.cli.COMMANDS`)."""
