"""The work of opos-tui, with no user interface: the CLI and the TUI both drive these modules."""
