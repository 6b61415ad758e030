from opos_tui.cli import run

run()
