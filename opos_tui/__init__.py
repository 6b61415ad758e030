"""opos-tui: e-mail dispatch of payment advices and dunning letters, configured and run in a terminal."""

__version__ = "0.1.0"
