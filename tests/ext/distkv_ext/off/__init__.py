"""An extension that its ``.no_load`` file disables."""
